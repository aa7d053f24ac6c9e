import Testing
@testable import ServalTokenizer
