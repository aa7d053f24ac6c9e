import Testing
@testable import ServalServer
