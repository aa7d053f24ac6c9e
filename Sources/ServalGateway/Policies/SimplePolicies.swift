import Atomics

/// `round_robin`: the next available worker in turn.
public final class RoundRobinPolicy: RoutingPolicy {
    public let name = "round_robin"
    public let needsText = false
    private let counter = ManagedAtomic<Int>(0)

    public init() {}

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        let i = counter.loadThenWrappingIncrement(ordering: .relaxed)
        return Selection(worker: workers[Int(i.magnitude % UInt(workers.count))], branch: "round_robin")
    }
}

/// `random`: uniform over available workers.
public final class RandomPolicy: RoutingPolicy {
    public let name = "random"
    public let needsText = false
    private let rng: LockedRandom

    public init(seed: UInt64? = nil) { rng = LockedRandom(seed: seed) }

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        Selection(worker: workers[rng.next(workers.count)], branch: "random")
    }
}

/// `power_of_two`: two distinct random workers, the one with fewer requests in flight.
public final class PowerOfTwoPolicy: RoutingPolicy {
    public let name = "power_of_two"
    public let needsText = false
    private let rng: LockedRandom

    public init(seed: UInt64? = nil) { rng = LockedRandom(seed: seed) }

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        if workers.count == 1 { return Selection(worker: workers[0], branch: "single") }
        let a = rng.next(workers.count)
        var b = rng.next(workers.count - 1)
        if b >= a { b += 1 }
        let pick = workers[b].load < workers[a].load ? workers[b] : workers[a]
        return Selection(worker: pick, branch: "power_of_two")
    }
}

/// `least_load`: the worker with the fewest requests in flight (first one on ties).
public final class LeastLoadPolicy: RoutingPolicy {
    public let name = "least_load"
    public let needsText = false

    public init() {}

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        Selection(worker: leastLoaded(workers), branch: "least_load")
    }
}
