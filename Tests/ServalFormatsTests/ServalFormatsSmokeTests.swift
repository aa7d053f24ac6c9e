import Testing
@testable import ServalFormats
