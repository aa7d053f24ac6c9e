import Foundation

/// What a policy may look at to route one request.
public struct RoutingRequest: Sendable {
    /// The request's text (prompt, or chat messages joined); empty when the policy does not
    /// need it or the request has none.
    public var text: String
    /// `X-SMG-Routing-Key` (or an implicit key: Authorization, X-Forwarded-For, Cookie).
    public var routingKey: String?
    /// `X-SMG-Target-Worker`: a worker index (0-based) to use directly.
    public var targetWorker: Int?
    /// The prompt's token ids as the workers tokenize it (`--kv-events`); nil when unknown.
    public var tokenIDs: [Int32]?

    public init(text: String = "", routingKey: String? = nil, targetWorker: Int? = nil, tokenIDs: [Int32]? = nil) {
        self.text = text
        self.routingKey = routingKey
        self.targetWorker = targetWorker
        self.tokenIDs = tokenIDs
    }
}

/// A policy's answer: the worker, and for cache-aware policies whether it was a cache hit.
public struct Selection {
    public var worker: Worker
    /// nil for policies that do not predict cache hits.
    public var cacheHit: Bool?
    /// The decision path (SMG's `smg_worker_selection_policy_branch_total` label).
    public var branch: String

    public init(worker: Worker, cacheHit: Bool? = nil, branch: String) {
        self.worker = worker
        self.cacheHit = cacheHit
        self.branch = branch
    }
}

/// A routing policy. `select` gets the available workers (healthy, not draining, breaker
/// closed or half-open) in registration order, never empty.
public protocol RoutingPolicy: AnyObject, Sendable {
    var name: String { get }
    /// Whether `select` reads `RoutingRequest.text` (the proxy parses the body only then).
    var needsText: Bool { get }
    /// Whether `select` reads `routingKey` / `targetWorker` (the proxy reads those headers only then).
    var needsRoutingKey: Bool { get }
    func select(from workers: [Worker], request: RoutingRequest) -> Selection
    /// A worker left the registry: forget what is kept about it.
    func workerRemoved(_ worker: Worker)
    /// Periodic maintenance (tree eviction, bucket boundaries); `now` in seconds.
    func maintain(now: Double)
}

extension RoutingPolicy {
    public var needsRoutingKey: Bool { false }
    public func workerRemoved(_ worker: Worker) {}
    public func maintain(now: Double) {}
}

/// `--policy` names, SMG's spelling.
public enum PolicyName: String, CaseIterable, Sendable {
    case cacheAware = "cache_aware"
    case roundRobin = "round_robin"
    case random
    case powerOfTwo = "power_of_two"
    case consistentHashing = "consistent_hashing"
    case leastLoad = "least_load"
    case prefixHash = "prefix_hash"
    case bucket
}

/// The knobs of all policies, SMG's flag names and defaults.
public struct PolicyConfig: Sendable, Equatable {
    public var cacheThreshold = 0.3
    public var balanceAbsThreshold = 64
    public var balanceRelThreshold = 1.5
    public var evictionIntervalSecs = 60.0
    public var maxTreeSize = 67_108_864
    public var prefixTokenCount = 256
    public var prefixHashLoadFactor = 1.25
    public var bucketAdjustIntervalSecs = 5.0

    public init() {}
}

public enum Policies {
    public static func make(
        _ name: PolicyName, config: PolicyConfig, seed: UInt64? = nil, kvIndex: KVEventIndex? = nil
    ) -> any RoutingPolicy {
        switch name {
        case .cacheAware: return CacheAwarePolicy(config: config, kvIndex: kvIndex)
        case .roundRobin: return RoundRobinPolicy()
        case .random: return RandomPolicy(seed: seed)
        case .powerOfTwo: return PowerOfTwoPolicy(seed: seed)
        case .consistentHashing: return ConsistentHashingPolicy(seed: seed)
        case .leastLoad: return LeastLoadPolicy()
        case .prefixHash: return PrefixHashPolicy(config: config)
        case .bucket: return BucketPolicy(config: config)
        }
    }
}

/// Load imbalance as SMG defines it: both the absolute gap and the ratio exceed their thresholds.
func isImbalanced(_ workers: [Worker], abs: Int, rel: Double) -> Bool {
    var lo = Int.max, hi = Int.min
    for w in workers {
        let l = w.load
        lo = min(lo, l)
        hi = max(hi, l)
    }
    return hi - lo > abs && Double(hi) > Double(lo) * rel
}

func leastLoaded(_ workers: [Worker]) -> Worker {
    var best = workers[0]
    var bestLoad = best.load
    for w in workers.dropFirst() {
        let l = w.load
        if l < bestLoad { best = w; bestLoad = l }
    }
    return best
}

/// A locked random generator (SplitMix64), seedable so distribution tests are repeatable.
final class LockedRandom: @unchecked Sendable {
    private let lock = NSLock()
    private var state: UInt64

    init(seed: UInt64?) { state = seed ?? UInt64.random(in: 0...UInt64.max) }

    func next(_ upperBound: Int) -> Int {
        lock.withLock {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Int(z % UInt64(upperBound))
        }
    }
}

/// FNV-1a, 64-bit: a stable hash (Swift's `Hasher` is seeded per process).
func stableHash<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01b3
    }
    // Final avalanche so nearby keys spread over the ring.
    h ^= h >> 33
    h = h &* 0xff51_afd7_ed55_8ccd
    h ^= h >> 33
    return h
}
