import ServalTensor

/// The engine's `TokenSampler` for a `CUDABackend`: rows the GPU sampler handles
/// (greedy, temperature, top-k/p, min-p, penalties, logit bias, suppressed ids, grammar
/// masks, up to 64 top logprobs) are sampled where the logits are and only ids and logprobs
/// come home. A step that needs what the GPU sampler does not do yet (sampling supports, `token_ids_logprob`, prompt logprobs, more rows than it holds) copies its
/// logits home and runs the CPU sampler on them: same algorithm, same Philox draws.
public struct CUDATokenSampler: TokenSampler {
    let backend: CUDABackend
    private var cpu = CPUSampler()
    /// Steps that fell back to the host sampler (for logs and tests).
    public private(set) var hostFallbacks = 0

    public init(backend: CUDABackend) { self.backend = backend }

    /// Whether the GPU sampler can draw this row.
    static func onDevice(_ r: SamplingRow) -> Bool {
        !r.returnSupport && r.requestedLogprobIDs.isEmpty
            && (r.topLogprobs ?? 0) <= CUDASampler.maxTopLogprobs
    }

    public mutating func sample(_ logits: Logits, _ batch: SamplingBatch) throws -> SamplerOutput {
        guard case .device(let rows, _) = logits.storage else { return try cpu.sample(logits, batch) }
        backend.makeCurrent()
        try backend.checkErrors()
        let count = logits.rowCount, vocab = logits.vocabSize
        if batch.rows.isEmpty && batch.promptScoring.isEmpty {
            return SamplerOutput(tokens: [], promptLogprobs: [])
        }
        if batch.promptScoring.isEmpty, batch.rows.count <= 512, count <= 512, batch.rows.allSatisfy(Self.onDevice) {
            let s = try backend.deviceSampler(vocab: vocab)
            let tokens = try s.sample(
                logits: CUDABackend.range(rows, count * vocab * 4), logitRows: count, rows: batch.rows,
                stream: backend.stream)
            try backend.checkErrors()
            backend.stepDone()
            return SamplerOutput(tokens: tokens, promptLogprobs: [])
        }
        hostFallbacks += 1
        var host = backend.read(rows, count: count * vocab)
        try backend.checkErrors()
        var sampler = cpu
        defer { cpu = sampler }
        return try host.withUnsafeMutableBufferPointer { buf in
            guard let base = buf.baseAddress else { return SamplerOutput(tokens: [], promptLogprobs: []) }
            return try sampler.sample(Logits(vocabSize: vocab, rowStart: logits.rowStart, storage: .host(base)), batch)
        }
    }
}
