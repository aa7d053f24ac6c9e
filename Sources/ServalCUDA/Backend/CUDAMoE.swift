import Foundation
import ServalTensor

extension CUDABackend {
    /// DeepSeek's routed experts on the GPU (`CUDAMoE`).
    public func makeMoE(routing: MoERouting, experts: [ExpertWeights], hidden: Int, intermediate: Int) throws
        -> any MoEBackend
    {
        try CUDAMoE(backend: self, routing: routing, experts: experts, hidden: hidden, intermediate: intermediate)
    }

    /// Expert parallel: the experts another rank holds (nil) get null table entries, which the
    /// kernels skip.
    public func makePartialMoE(routing: MoERouting, experts: [ExpertWeights?], hidden: Int, intermediate: Int)
        throws -> any MoEBackend
    {
        try CUDAMoE(backend: self, routing: routing, experts: experts, hidden: hidden, intermediate: intermediate)
    }
}

/// `MoEBackend` on the GPU. `route`: `sv_moe_route`, a warp per token, the CPU's rule
/// step for step (scores, correction bias for selection only, group masking, top-k with
/// ties to the lower id, normalisation, scaling). `experts` reads each expert's bf16
/// matrices through a device table of their addresses, with no per-expert host loop and no
/// host read of the routing, so it runs inside CUDA graphs (`CUDAKernels.moeExperts`):
/// grouped by expert where rows and addresses are 16-byte multiples (each active expert's
/// rows streamed once for all its tokens), per (token, choice) pair otherwise or with
/// `SERVAL_CUDA_MOE=pairs`.
final class CUDAMoE: MoEBackend, @unchecked Sendable {
    /// Limits of the routing kernel's per-thread arrays.
    static let maxExperts = 512
    static let maxGroups = 64

    let routing: MoERouting
    let backend: CUDABackend
    let hidden: Int
    let intermediate: Int
    /// gate | up | down matrix addresses, `experts` each (u64).
    private let table: DeviceBuffer
    /// Whether `experts` takes the grouped kernels (16-byte rows and addresses, not turned off;
    /// always for fp8 experts).
    let grouped: Bool
    /// Block-scaled fp8 experts (kept as fp8, `CUDABackend.blockScaledWeight`): their block size.
    let fp8Block: (rows: Int, cols: Int)?
    /// pairs × intermediate fp32 (then, grouped, pairs × hidden fp32, the sort's meta and perm).
    private var pairScratch: DeviceBuffer?

    /// `experts`: every logical expert's weights, or nil for one another rank holds (expert
    /// parallel: its pairs add nothing here).
    init(backend: CUDABackend, routing: MoERouting, experts: [ExpertWeights?], hidden: Int, intermediate: Int) throws {
        let E = routing.experts
        guard E > 0, E <= Self.maxExperts, experts.count == E else {
            throw CUDAError.invalid("MoE: \(E) experts (\(experts.count) given) not supported on CUDA (1...512)")
        }
        guard routing.groups >= 1, routing.groups <= Self.maxGroups, routing.topK >= 1, routing.topK <= E else {
            throw CUDAError.invalid("MoE: \(routing.groups) groups / top-\(routing.topK) not supported on CUDA")
        }
        for (e, w) in experts.enumerated() {
            guard let w else { continue }
            guard w.gate.rows == intermediate, w.up.rows == intermediate, w.gate.cols == hidden, w.up.cols == hidden,
                w.down.rows == hidden, w.down.cols == intermediate
            else { throw CUDAError.invalid("MoE: expert \(e)'s matrices do not have the layer's shapes") }
        }
        self.routing = routing
        self.backend = backend
        self.hidden = hidden
        self.intermediate = intermediate
        fp8Block = try Self.fp8Block(of: experts)
        try backend.context.makeCurrent()
        let addresses: [UInt64] =
            experts.map { $0.map { CUDABackend.address($0.gate.base) } ?? 0 }
            + experts.map { $0.map { CUDABackend.address($0.up.base) } ?? 0 }
            + experts.map { $0.map { CUDABackend.address($0.down.base) } ?? 0 }
        let aligned = hidden % 8 == 0 && intermediate % 8 == 0 && addresses.allSatisfy { $0 % 16 == 0 }
        grouped = fp8Block != nil || (aligned && ProcessInfo.processInfo.environment["SERVAL_CUDA_MOE"] != "pairs")
        table = try DeviceBuffer(bytes: addresses.count * 8)
        addresses.withUnsafeBytes { raw in
            if let base = raw.baseAddress { backend.stage(base, bytes: raw.count, to: table.pointer.address) }
        }
    }

    /// The fp8 block size when every present expert's three matrices are block-scaled fp8 in
    /// one block size, with the scale grid where the kernels look for it (after the weights,
    /// 256-byte aligned); nil when none is; a mix is refused.
    static func fp8Block(of experts: [ExpertWeights?]) throws -> (rows: Int, cols: Int)? {
        let matrices = experts.compactMap { $0 }.flatMap { [$0.gate, $0.up, $0.down] }
        let scales = matrices.compactMap(\.blockScale)
        guard let first = scales.first else { return nil }
        guard scales.count == matrices.count,
            scales.allSatisfy({ $0.blockRows == first.blockRows && $0.blockCols == first.blockCols })
        else { throw CUDAError.invalid("MoE: the experts mix fp8 and other weights, or fp8 block sizes") }
        for m in matrices {
            guard let s = m.blockScale else { continue }
            let at = CUDABackend.address(m.base) + UInt64((m.rows * m.cols + 255) / 256 * 256)
            guard CUDABackend.address(s.scales) == at else {
                throw CUDAError.invalid("MoE: an fp8 expert's scale grid is not where the expert kernels read it")
            }
        }
        return (first.blockRows, first.blockCols)
    }

    /// The layer's expert tables and sizes for `CUDAKernels.moeExperts`.
    private var shape: CUDAKernels.MoEShape {
        let E = routing.experts
        func entry(_ part: Int) -> DevicePointer {
            DevicePointer(address: table.pointer.address + UInt64(part * E * 8), bytes: E * 8)
        }
        return CUDAKernels.MoEShape(
            experts: E, topK: routing.topK, hidden: hidden, intermediate: intermediate, gate: entry(0), up: entry(1),
            down: entry(2), fp8Block: fp8Block)
    }

    func reserve(tokens: Int) throws {
        let bytes = shape.scratchBytes(tokens: tokens, grouped: grouped)
        if (pairScratch?.pointer.bytes ?? 0) < bytes {
            try backend.growForGraph()  // queued work may still read the old scratch
            pairScratch = try DeviceBuffer(bytes: bytes)
        }
    }

    func route(
        logits: UnsafePointer<Float>, tokens: Int, bias: UnsafePointer<Float>?, ids: UnsafeMutablePointer<Int32>,
        weights: UnsafeMutablePointer<Float>
    ) {
        guard tokens > 0 else { return }
        let r = routing, E = r.experts, k = r.topK
        backend.enqueue {
            var a = KernelArgs()
            a.add(CUDABackend.range(logits, tokens * E * 4))
            a.add(bias.map { CUDABackend.range($0, E * 4) } ?? DevicePointer(address: 0, bytes: 0))
            a.add(CUDABackend.range(ids, tokens * k * 4)); a.add(CUDABackend.range(weights, tokens * k * 4))
            a.add(tokens); a.add(E); a.add(k)
            let method: Int32
            switch r.method {
            case .greedy: method = 0
            case .groupLimitedGreedy: method = 1
            case .noauxTC: method = 2
            }
            a.add(method); a.add(Int32(r.scoring == .sigmoid ? 1 : 0)); a.add(r.groups); a.add(r.topkGroups)
            a.add(Int32(r.normalize ? 1 : 0)); a.add(r.scalingFactor)
            try backend.kernels.fn("sv_moe_route").launch(
                grid: ((tokens + 3) / 4, 1, 1), block: (128, 1, 1), stream: backend.stream, args: a)
        }
    }

    func experts(
        _ x: UnsafePointer<Float>, tokens: Int, ids: UnsafePointer<Int32>, weights: UnsafePointer<Float>,
        into y: UnsafeMutablePointer<Float>
    ) {
        guard tokens > 0 else { return }
        let H = hidden, pairs = tokens * routing.topK
        backend.enqueue {
            guard let scratch = pairScratch,
                scratch.pointer.bytes >= shape.scratchBytes(tokens: tokens, grouped: grouped)
            else { throw CUDAError.invalid("MoE of \(tokens) tokens: reserve was not called for it") }
            try backend.kernels.moeExperts(
                x: CUDABackend.range(x, tokens * H * 4), ids: CUDABackend.range(ids, pairs * 4),
                weights: CUDABackend.range(weights, pairs * 4), y: CUDABackend.range(y, tokens * H * 4),
                scratch: scratch.pointer, tokens: tokens, shape: shape, grouped: grouped, stream: backend.stream)
        }
    }
}
