/// A selftest's pass/fail count and how one case is recorded: `body` returns nil when the case
/// passes, else what went wrong; a thrown error fails it too. Each case prints one line.
struct SelftestTally {
    private(set) var passed = 0
    private(set) var failed = 0

    mutating func record(_ name: String, emit: (String) -> Void, _ body: () throws -> String?) {
        do {
            if let problem = try body() {
                failed += 1
                emit("FAIL \(name): \(problem)")
            } else {
                passed += 1
                emit("ok   \(name)")
            }
        } catch {
            failed += 1
            emit("FAIL \(name): \(error)")
        }
    }
}
