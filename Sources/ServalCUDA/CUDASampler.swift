import ServalTensor

/// Samples on the GPU where the logits are: logit bias, penalties, suppressed tokens and
/// grammar masks (structured outputs) edit the rows in place, then greedy / temperature / top-k / top-p / min-p with the
/// same Philox draws as `CPUSampler`; only token ids (and the logprobs asked for) come
/// home. Buffers are placed once at init for up to `maxRows` rows.
public final class CUDASampler: @unchecked Sendable {
    public static let maxTopLogprobs = 64

    let kernels: CUDAKernels
    public let vocab: Int
    public let maxRows: Int
    public let maxEdits: Int
    /// Rows of logits the raw copy (for logprobs) can hold.
    public let maxLogitRows: Int
    private let staging: PinnedBuffer
    private var arena: DeviceArena
    private let params: DevicePointer
    private let weights: DevicePointer
    private let raw: DevicePointer
    private let outTokens: DevicePointer
    private let outLogprob: DevicePointer
    private let outTopIDs: DevicePointer
    private let outTopLP: DevicePointer
    /// 64-bit words of one row's grammar mask (`SamplingRow.allowedTokens`).
    public let maskWords: Int
    private let maskStaging: PinnedBuffer
    private let masks: DevicePointer

    public init(kernels: CUDAKernels, vocab: Int, maxRows: Int, maxLogitRows: Int, maxEdits: Int = 1 << 16) throws {
        self.kernels = kernels
        self.vocab = vocab
        self.maxRows = maxRows
        self.maxEdits = maxEdits
        self.maxLogitRows = maxLogitRows
        let paramBytes = Self.paramBytes(rows: maxRows, edits: maxEdits)
        staging = try PinnedBuffer(bytes: paramBytes)
        let n = maxRows
        maskWords = (vocab + 63) / 64
        let maskBytes = Self.maskBytes(rows: n, words: maskWords)
        maskStaging = try PinnedBuffer(bytes: maskBytes)
        arena = try DeviceArena(
            bytes: paramBytes + n * vocab * 4 + max(maxLogitRows, 1) * vocab * 4
                + n * (8 + Self.maxTopLogprobs * 8) + maskBytes + 8 * 256)
        params = try arena.allocate(bytes: paramBytes)
        weights = try arena.allocate(bytes: n * vocab * 4)
        raw = try arena.allocate(bytes: max(maxLogitRows, 1) * vocab * 4)
        outTokens = try arena.allocate(bytes: n * 4)
        outLogprob = try arena.allocate(bytes: n * 4)
        outTopIDs = try arena.allocate(bytes: n * Self.maxTopLogprobs * 4)
        outTopLP = try arena.allocate(bytes: n * Self.maxTopLogprobs * 4)
        masks = try arena.allocate(bytes: maskBytes)
    }

    static func paramBytes(rows: Int, edits: Int) -> Int { rows * 96 + edits * 3 * 12 + 4096 }

    /// A mask index per row (Int32, padded to 8 bytes), then one mask of `words` words per row.
    static func maskBytes(rows: Int, words: Int) -> Int { (rows * 4 + 7) / 8 * 8 + rows * words * 8 }

    /// Packs the rows' grammar masks into the pinned staging buffer and sends them: row i's
    /// index is -1 (no mask) or its slot; a slot holds `maskWords` words, shorter masks padded
    /// with zeros (tokens past a mask's words are not allowed, as on the CPU). Returns the
    /// device pointers of the indices and the words, or nil when no row has a mask.
    private func uploadMasks(_ rows: [SamplingRow], stream: CUDAStream) throws -> (DevicePointer, DevicePointer)? {
        guard rows.contains(where: { $0.allowedTokens != nil }) else { return nil }
        let n = rows.count, words = maskWords
        let wordsOffset = (n * 4 + 7) / 8 * 8
        let index = maskStaging.base.bindMemory(to: Int32.self, capacity: n)
        let slots = (maskStaging.base + wordsOffset).bindMemory(to: UInt64.self, capacity: n * words)
        var used = 0
        for (i, r) in rows.enumerated() {
            guard let allowed = r.allowedTokens else {
                index[i] = -1
                continue
            }
            index[i] = Int32(used)
            let slot = slots + used * words
            let copied = min(allowed.count, words)
            allowed.withUnsafeBufferPointer { src in
                if let base = src.baseAddress { slot.update(from: base, count: copied) }
            }
            if copied < words { (slot + copied).initialize(repeating: 0, count: words - copied) }
            used += 1
        }
        try stream.copy(from: maskStaging.base, to: masks, bytes: wordsOffset + used * words * 8)
        let wordsPointer = DevicePointer(
            address: masks.address + UInt64(wordsOffset), bytes: masks.bytes - wordsOffset)
        return (masks, wordsPointer)
    }

    /// One token per row of `rows`; `logits` is fp32 [logitRows, vocab] on the device and
    /// is edited in place. Blocks until the ids are home.
    public func sample(
        logits: DevicePointer, logitRows: Int, rows: [SamplingRow],
        stream: CUDAStream
    ) throws -> [SampledToken] {
        let n = rows.count
        guard n > 0 else { return [] }
        guard n <= maxRows else { throw CUDAError.invalid("\(n) sampling rows, the sampler holds \(maxRows)") }
        guard logits.bytes >= logitRows * vocab * 4 else { throw CUDAError.invalid("logits buffer too small") }
        var layout = ParamLayout()
        for r in rows {
            guard r.logitsRow >= 0 && r.logitsRow < logitRows else {
                throw CUDAError.invalid("sampling row names logits row \(r.logitsRow) of \(logitRows)")
            }
            guard (r.topLogprobs ?? 0) <= Self.maxTopLogprobs else {
                throw CUDAError.invalid(
                    "top_logprobs \(r.topLogprobs ?? 0) above the GPU sampler's \(Self.maxTopLogprobs)")
            }
            guard r.requestedLogprobIDs.isEmpty else {
                throw CUDAError.invalid("token_ids_logprob is not supported by the CUDA sampler yet")
            }
            layout.add(r)
        }
        guard layout.editCount <= maxEdits else {
            throw CUDAError.invalid("\(layout.editCount) logit edits, the sampler holds \(maxEdits)")
        }
        let wantLogprobs = rows.contains { $0.topLogprobs != nil }
        if wantLogprobs {
            guard logitRows <= maxLogitRows else {
                throw CUDAError.invalid("logprobs over \(logitRows) logits rows, the sampler holds \(maxLogitRows)")
            }
            try stream.copy(from: logits, to: raw, bytes: logitRows * vocab * 4)
        }
        let bytes = layout.write(to: staging)
        try stream.copy(from: staging.base, to: params, bytes: bytes)
        func at(_ offset: Int) -> DevicePointer {
            DevicePointer(address: params.address + UInt64(offset), bytes: bytes - offset)
        }

        var e = KernelArgs()
        e.add(logits); e.add(vocab); e.add(at(layout.offRows))
        e.add(at(layout.offBiasPtr)); e.add(at(layout.offBiasTok)); e.add(at(layout.offBiasVal))
        e.add(at(layout.offPenPtr)); e.add(at(layout.offPenTok)); e.add(at(layout.offPenCnt))
        e.add(at(layout.offFreq)); e.add(at(layout.offPres)); e.add(at(layout.offRep))
        e.add(at(layout.offSupPtr)); e.add(at(layout.offSupTok))
        if layout.editCount > 0 { try kernels.logitEdits(e, rows: n, stream: stream) }
        // Masks after the edits, as the CPU sampler applies them; logprobs still read `raw`.
        if let (index, words) = try uploadMasks(rows, stream: stream) {
            var m = KernelArgs()
            m.add(logits); m.add(vocab); m.add(at(layout.offRows)); m.add(index); m.add(words); m.add(maskWords)
            try kernels.tokenMask(m, rows: n, stream: stream)
        }

        var s = KernelArgs()
        s.add(logits); s.add(vocab); s.add(at(layout.offRows)); s.add(at(layout.offTemp)); s.add(at(layout.offTopK))
        s.add(at(layout.offTopP)); s.add(at(layout.offMinP)); s.add(at(layout.offSeed)); s.add(at(layout.offDraw))
        s.add(weights); s.add(outTokens)
        try kernels.sample(s, rows: n, stream: stream)

        let nTop = rows.map { $0.topLogprobs ?? 0 }.max() ?? 0
        if wantLogprobs {
            var l = KernelArgs()
            l.add(raw); l.add(vocab); l.add(at(layout.offRows)); l.add(outTokens); l.add(Int32(nTop))
            l.add(outLogprob); l.add(outTopIDs); l.add(outTopLP)
            try kernels.logprobs(l, rows: n, stream: stream)
        }
        let tokens: [Int32] = try stream.download(outTokens, count: n)
        guard wantLogprobs else { return tokens.map { SampledToken(tokenID: $0) } }
        let lp: [Float] = try stream.download(outLogprob, count: n)
        let topIDs: [Int32] = nTop > 0 ? try stream.download(outTopIDs, count: n * nTop) : []
        let topLP: [Float] = nTop > 0 ? try stream.download(outTopLP, count: n * nTop) : []
        return rows.enumerated().map { i, r in
            guard let k = r.topLogprobs else { return SampledToken(tokenID: tokens[i]) }
            let count = min(k, vocab)
            let top = (0..<count).map { (tokenID: topIDs[i * nTop + $0], logprob: topLP[i * nTop + $0]) }
            return SampledToken(tokenID: tokens[i], logprob: TokenLogprob(tokenID: tokens[i], logprob: lp[i], top: top))
        }
    }
}

/// The sampler's per-step parameters packed into one upload: per-row arrays, then the
/// CSR lists of bias, penalty and suppression edits.
struct ParamLayout {
    var rows: [Int32] = [], temp: [Float] = [], topK: [Int32] = [], topP: [Float] = [], minP: [Float] = []
    var seed: [UInt64] = [], draw: [UInt64] = [], freq: [Float] = [], pres: [Float] = [], rep: [Float] = []
    var biasPtr: [Int32] = [0], biasTok: [Int32] = [], biasVal: [Float] = []
    var penPtr: [Int32] = [0], penTok: [Int32] = [], penCnt: [Int32] = []
    var supPtr: [Int32] = [0], supTok: [Int32] = []
    var offRows = 0, offTemp = 0, offTopK = 0, offTopP = 0, offMinP = 0, offSeed = 0, offDraw = 0
    var offFreq = 0, offPres = 0, offRep = 0, offBiasPtr = 0, offBiasTok = 0, offBiasVal = 0
    var offPenPtr = 0, offPenTok = 0, offPenCnt = 0, offSupPtr = 0, offSupTok = 0

    var editCount: Int { biasTok.count + penTok.count + supTok.count }

    mutating func add(_ r: SamplingRow) {
        rows.append(Int32(r.logitsRow))
        temp.append(r.temperature)
        topK.append(Int32(clamping: r.topK))
        topP.append(r.topP)
        minP.append(r.minP)
        seed.append(r.seed)
        draw.append(r.drawIndex)
        freq.append(r.frequencyPenalty)
        pres.append(r.presencePenalty)
        rep.append(r.repetitionPenalty)
        for (t, b) in r.logitBias.sorted(by: { $0.key < $1.key }) {
            biasTok.append(t)
            biasVal.append(b)
        }
        biasPtr.append(Int32(biasTok.count))
        let penaltiesApply = r.frequencyPenalty != 0 || r.presencePenalty != 0 || r.repetitionPenalty != 1
        if penaltiesApply {
            for (t, c) in r.generatedCounts.sorted(by: { $0.key < $1.key }) {
                penTok.append(t)
                penCnt.append(Int32(clamping: c))
            }
        }
        penPtr.append(Int32(penTok.count))
        for t in Set(r.suppressed).sorted() { supTok.append(t) }
        supPtr.append(Int32(supTok.count))
    }

    /// Writes everything into `buffer` (8-byte aligned pieces); returns the byte count.
    mutating func write(to buffer: PinnedBuffer) -> Int {
        var offset = 0
        func put<T>(_ values: [T], _ off: inout Int) {
            offset = (offset + 7) / 8 * 8
            off = offset
            values.withUnsafeBytes { raw in
                if let base = raw.baseAddress {
                    precondition(offset + raw.count <= buffer.bytes, "sampler staging overflow")
                    (buffer.base + offset).copyMemory(from: base, byteCount: raw.count)
                }
                offset += raw.count
            }
        }
        put(seed, &offSeed); put(draw, &offDraw)
        put(rows, &offRows); put(temp, &offTemp); put(topK, &offTopK); put(topP, &offTopP); put(minP, &offMinP)
        put(freq, &offFreq); put(pres, &offPres); put(rep, &offRep)
        put(biasPtr, &offBiasPtr); put(biasTok, &offBiasTok); put(biasVal, &offBiasVal)
        put(penPtr, &offPenPtr); put(penTok, &offPenTok); put(penCnt, &offPenCnt)
        put(supPtr, &offSupPtr); put(supTok, &offSupTok)
        return max(offset, 8)
    }
}
