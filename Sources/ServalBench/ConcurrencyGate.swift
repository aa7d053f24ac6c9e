/// Caps how many requests are in flight (`--max-concurrency`) and records
/// the highest number that actually were, which the report shows as "Max
/// concurrency achieved" — a server that serialises requests shows up here.
actor ConcurrencyGate {
    private let limit: Int?
    private var inFlight = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private(set) var peak = 0

    init(limit: Int?) { self.limit = limit }

    func acquire() async {
        if let limit, inFlight >= limit {
            await withCheckedContinuation { waiters.append($0) }
            // release() handed its slot straight to us; inFlight already counts it.
        } else {
            inFlight += 1
        }
        peak = max(peak, inFlight)
    }

    func release() {
        if !waiters.isEmpty {
            waiters.removeFirst().resume()
        } else {
            inFlight -= 1
        }
    }
}
