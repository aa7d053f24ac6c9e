import Testing
@testable import ServalTemplate
