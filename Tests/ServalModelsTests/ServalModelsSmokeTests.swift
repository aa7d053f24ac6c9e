import Testing
@testable import ServalModels
