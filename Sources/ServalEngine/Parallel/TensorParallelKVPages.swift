import Foundation
import ServalModels
import ServalTensor

/// Rank 0's view of a tensor-parallel KV pool for prefill-decode disaggregation: each rank's
/// pool holds only its own KV heads' shard (MLA: the whole latent row, replicated), so a
/// slot's bytes are every rank's shard bytes, rank after rank. Copying out, rank 0 tells the
/// other ranks (control channel), every rank copies the slots out of its shard and rank 0
/// gathers them (one all-gather); copying in, rank 0 broadcasts the bytes and every rank
/// stores its own segment. The wire carries whole slots (rank 0's shard, then rank 1's, ...),
/// so the decode side needs the same `--tp-size` (checked at bootstrap).
final class TensorParallelKVPages: KVPageCopying, @unchecked Sendable {
    private let leader: TensorParallelLeader
    private let local: any KVPageCopying
    /// Bytes of one slot of each rank's shard, in rank order.
    let rankBytes: [Int]

    /// Asks every rank for its shard's slot size (a collective: the ranks must be running).
    init(leader: TensorParallelLeader, local: any KVPageCopying) throws {
        self.leader = leader
        self.local = local
        try leader.send(.kvPageFormat)
        rankBytes = try Self.shardSizes(local: local, communicator: leader.communicator)
    }

    var layout: KVLayout { local.layout }
    var layerCount: Int { local.layerCount }
    var slotCount: Int { local.slotCount }
    var dtype: DType { local.dtype }
    var slotByteCount: Int { rankBytes.reduce(0, +) }
    var pageFormatSignature: String {
        "\(local.pageFormatSignature) on \(rankBytes.count) tensor-parallel ranks (bytes per token per rank \(rankBytes))"
    }

    func copyOut(slots: ArraySlice<Int32>, into destination: UnsafeMutableRawPointer) throws {
        guard !slots.isEmpty else { return }
        try leader.send(.kvPagesOut(slots: Array(slots), rankBytes: rankBytes))
        let shards = try Self.gather(
            slots: slots, rankBytes: rankBytes, pool: local, communicator: leader.communicator)
        // Rank-major shards to slot-major bytes: per slot, rank 0's bytes, then rank 1's, ...
        shards.withUnsafeBytes { src in
            var out = destination
            for i in 0..<slots.count {
                var segment = 0
                for b in rankBytes {
                    out.copyMemory(from: src.baseAddress! + segment + i * b, byteCount: b)
                    out += b
                    segment += Self.paddedBytes(slots.count * b)
                }
            }
        }
    }

    func copyIn(slots: ArraySlice<Int32>, from source: UnsafeRawPointer) throws {
        guard !slots.isEmpty else { return }
        // Slot-major bytes to rank-major segments (unpadded): rank r's is what its shard stores.
        let n = slots.count
        var payload = [UInt8](repeating: 0, count: n * slotByteCount)
        payload.withUnsafeMutableBytes { dst in
            var segment = 0
            var offset = 0
            for b in rankBytes {
                for i in 0..<n {
                    (dst.baseAddress! + segment + i * b).copyMemory(
                        from: source + i * slotByteCount + offset, byteCount: b)
                }
                segment += n * b
                offset += b
            }
        }
        let message = RankMessage.kvPagesIn(slots: Array(slots), rankBytes: rankBytes, payload: payload)
        try leader.send(message)
        try Self.store(slots: slots, rankBytes: rankBytes, payload: payload, pool: local, rank: 0)
    }

    // MARK: Every rank's part (rank 0 above, the others in `follow`)

    /// A rank other than 0 runs its part of a KV page message from rank 0.
    static func follow(_ message: RankMessage, cache: (any KVCacheStorage)?, communicator: any Communicator) throws {
        let rank = communicator.rank
        guard let pool = (cache as? ModelKVCache)?.pool as? any KVPageCopying else {
            throw EngineError.model("rank \(rank): KV page copy without a KV pool the host can copy")
        }
        switch message {
        case .kvPageFormat:
            _ = try shardSizes(local: pool, communicator: communicator)
        case .kvPagesOut(let slots, let rankBytes):
            try check(rankBytes, pool: pool, rank: rank, size: communicator.size)
            _ = try gather(slots: slots[...], rankBytes: rankBytes, pool: pool, communicator: communicator)
        case .kvPagesIn(let slots, let rankBytes, let payload):
            try check(rankBytes, pool: pool, rank: rank, size: communicator.size)
            guard payload.count == slots.count * rankBytes.reduce(0, +) else {
                throw EngineError.model("rank \(rank): KV pages of the wrong size")
            }
            try store(slots: slots[...], rankBytes: rankBytes, payload: payload, pool: pool, rank: rank)
        default:
            throw EngineError.model("rank \(rank): not a KV page message")
        }
    }

    private static func check(_ rankBytes: [Int], pool: any KVPageCopying, rank: Int, size: Int) throws {
        guard rankBytes.count == size, rankBytes[rank] == pool.slotByteCount else {
            throw EngineError.model("rank \(rank): KV page sizes \(rankBytes) do not match its pool")
        }
    }

    /// Every rank's bytes per slot, in rank order (an all-gather of one word each).
    private static func shardSizes(local: any KVPageCopying, communicator: any Communicator) throws -> [Int] {
        let size = communicator.size
        var mine = Float(bitPattern: UInt32(local.slotByteCount))
        var all = [Float](repeating: 0, count: size)
        try all.withUnsafeMutableBufferPointer {
            try communicator.allGatherV(&mine, counts: Array(repeating: 1, count: size), into: $0.baseAddress!)
        }
        return all.map { Int($0.bitPattern) }
    }

    /// `bytes` rounded up to whole 4-byte words (the communicator moves floats; bits unchanged).
    private static func paddedBytes(_ bytes: Int) -> Int { (bytes + 3) / 4 * 4 }

    /// Every rank copies `slots` out of its shard; returns every rank's bytes, rank after
    /// rank, each segment padded to whole words.
    private static func gather(
        slots: ArraySlice<Int32>, rankBytes: [Int], pool: any KVPageCopying, communicator: any Communicator
    ) throws -> [Float] {
        let n = slots.count, rank = communicator.rank
        let counts = rankBytes.map { paddedBytes(n * $0) / 4 }
        var mine = [Float](repeating: 0, count: max(counts[rank], 1))
        try mine.withUnsafeMutableBytes { try pool.copyOut(slots: slots, into: $0.baseAddress!) }
        var all = [Float](repeating: 0, count: max(counts.reduce(0, +), 1))
        try all.withUnsafeMutableBufferPointer { out in
            try mine.withUnsafeBufferPointer {
                try communicator.allGatherV($0.baseAddress!, counts: counts, into: out.baseAddress!)
            }
        }
        return all
    }

    /// Stores rank `rank`'s segment of `payload` into its shard.
    private static func store(
        slots: ArraySlice<Int32>, rankBytes: [Int], payload: [UInt8], pool: any KVPageCopying, rank: Int
    ) throws {
        let offset = rankBytes[..<rank].reduce(0, +) * slots.count
        try payload.withUnsafeBytes { try pool.copyIn(slots: slots, from: $0.baseAddress! + offset) }
    }
}
