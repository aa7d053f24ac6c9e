/// Decides whether the engine waits for replacement requests after a step that
/// finished some (`EngineConfig.refillWait`). Clients that do not send their next
/// request right away would make every such wait a pure loss, so after `maxMisses`
/// waits in a row that brought nothing it stops waiting, and only probes again
/// every `probeEvery`-th chance; one wait that brings a request turns it back on.
struct RefillGate {
    let maxMisses: Int
    let probeEvery: Int
    private(set) var misses = 0
    private var skipped = 0

    init(maxMisses: Int = 3, probeEvery: Int = 16) {
        self.maxMisses = maxMisses
        self.probeEvery = probeEvery
    }

    mutating func shouldWait() -> Bool {
        if misses < maxMisses { return true }
        skipped += 1
        if skipped >= probeEvery {
            skipped = 0
            return true
        }
        return false
    }

    mutating func record(arrived: Int) {
        misses = arrived > 0 ? 0 : misses + 1
    }
}
