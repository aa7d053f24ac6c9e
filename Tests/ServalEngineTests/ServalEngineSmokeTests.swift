import Testing
@testable import ServalEngine
