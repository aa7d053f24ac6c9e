import Testing
@testable import ServalTensor
