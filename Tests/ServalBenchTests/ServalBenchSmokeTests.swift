import Testing
@testable import ServalBench
