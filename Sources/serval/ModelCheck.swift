import Foundation
import ServalBase
import ServalCPU
import ServalCUDA
import ServalModels
import ServalTensor

/// `selftest --device cuda --model-path M`: the same model on the CPU and the GPU backend.
/// For each prompt: greedy tokens generated step by step on both (exact match counted),
/// then teacher forcing: prompt + the reference's tokens in one pass on both, and the share
/// of positions whose GPU argmax equals the reference's (the issue asks >= 0.98 when tokens
/// diverge). Two references: the CPU with the GPU's weights (every matrix rounded to bf16 as
/// the CUDA backend uploads it), which decides the check, so it tests the GPU's kernels
/// rather than the rounding of the weights; and the CPU with the stored weights, reported
/// beside it (tiny random-weight models have near-flat logits, and MoE routing turns a
/// bf16 rounding of a weight into another expert now and then).
/// Below 0.98 a comparison still passes when every disagreement is a near-tie the GPU's own
/// error explains: the reference's margin between its top token and the GPU's pick is below
/// twice the median (over positions) of the largest |logit difference| between the two.
/// Last, the GPU's decode steps replayed as CUDA graphs are compared with the same steps run
/// eagerly (`compareGraphs`). Every run's KV cache is `kvDType` (`auto`: f16 on the CPU, bf16 on
/// the GPU; `fp8_e4m3` / `fp8_e5m2`: the same fp8 pool on both).
struct ModelCheck {
    let path: String
    let format: LoadFormat
    let steps: Int
    let seed: UInt64
    var kvDType = KVCacheDType.auto

    /// Returns whether the check passed against the bf16-weight CPU reference.
    func run(_ say: (String) -> Void) throws -> Bool {
        var options = ModelLoadOptions(residency: .mapped)
        options.dummyWeightType = .bf16
        options.seed = 7
        let cpu = try ModelLoader.load(path: path, format: format, backend: CPUBackend(), options: options)
        let cpu16 = try ModelLoader.load(
            path: path, format: format, backend: CPUBackend(weightsAsBF16: true), options: options)
        let backend = try CUDABackend(ordinal: 0) { logLine($0) }
        let gpu = try ModelLoader.load(path: path, format: format, backend: backend, options: options)
        let info = cpu.info
        say(
            "model check: \(info.architecture) '\(info.name)', \(info.layerCount) layers, \(info.weightTypes) "
                + "(GPU: bf16), \(steps) greedy steps per prompt, KV cache \(kvDType)")
        var rng = SeededGenerator(seed: seed)
        let lengths = [1, 7, 33, 100, 260]
        let prompts = lengths.map { n in (0..<n).map { _ in Int32(rng.next() % UInt64(info.vocabSize)) } }
        say("  reference: CPU with the GPU's bf16 weights")
        let passed = try compare(cpu16, gpu, prompts: prompts, say)
        say("  reference: CPU with the stored weights (reported, not decisive)")
        _ = try compare(cpu, gpu, prompts: prompts, say)
        let graphs = try compareGraphs(gpu, backend: backend, prompts: prompts, say)
        let padded = try comparePaddedGraphs(gpu, backend: backend, prompts: Array(prompts[1...3]), say)
        return passed && graphs && padded
    }

    /// The decode steps replayed as CUDA graphs (programmatic launch edges included) against the
    /// same steps run eagerly: the eager run's greedy tokens fed to both one at a time, each
    /// step's logits compared. Attention may split the keys differently in a graph (planned for
    /// its longest context), so the bound is 1e-2 of the step's largest |logit|, far below what a
    /// wrong replay gives.
    private func compareGraphs(
        _ gpu: any LanguageModel, backend: CUDABackend, prompts: [[Int32]], _ say: (String) -> Void
    ) throws -> Bool {
        var sampler = gpu.makeSampler()
        var worst: Float = 0, argmaxSame = 0, steps = 0, replays = 0, captures = 0
        for p in prompts {
            // A wrapper per prompt: its graphs point into this prompt's KV cache only.
            let graphed = CUDAGraphModel(gpu, backend: backend, maxBatch: 1)
            let fed = try generate(gpu, &sampler, prompt: p)
            let eager = try stepLogits(gpu, prompt: p, fed: fed),
                replayed = try stepLogits(graphed, prompt: p, fed: fed)
            replays += graphed.replays
            captures += graphed.captures
            for (a, b) in zip(eager, replayed) {
                let scale = max(a.reduce(0) { max($0, abs($1)) }, 1e-6)
                worst = max(worst, zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale)
                if Self.argmax(a[...]) == Self.argmax(b[...]) { argmaxSame += 1 }
                steps += 1
            }
        }
        let ok = worst <= 1e-2 && replays > 0
        say(
            String(
                format: "graph check: %d decode steps (%d replayed, %d captured) against eager: argmax equal %d/%d, "
                    + "max |dlogit| %.2e of the step's largest %@",
                steps, replays, captures, argmaxSame, steps, worst,
                ok ? "(pass)" : replays == 0 ? "(FAIL: no step replayed)" : "(FAIL: above 1e-2)"))
        return ok
    }

    /// Three sequences decoded together, as graphs of four (one padding copy of the last) and
    /// eagerly: every real row's logits of every step compared, as `compareGraphs` does.
    private func comparePaddedGraphs(
        _ gpu: any LanguageModel, backend: CUDABackend, prompts: [[Int32]], _ say: (String) -> Void
    ) throws -> Bool {
        var sampler = gpu.makeSampler()
        let fed = try prompts.map { try generate(gpu, &sampler, prompt: $0) }
        let graphed = CUDAGraphModel(gpu, backend: backend, maxBatch: 4)
        let eager = try batchLogits(gpu, prompts: prompts, fed: fed)
        let replayed = try batchLogits(graphed, prompts: prompts, fed: fed)
        var worst: Float = 0, argmaxSame = 0, rows = 0
        for (a, b) in zip(eager.joined(), replayed.joined()) {
            let scale = max(a.reduce(0) { max($0, abs($1)) }, 1e-6)
            worst = max(worst, zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale)
            if Self.argmax(a[...]) == Self.argmax(b[...]) { argmaxSame += 1 }
            rows += 1
        }
        let ok = worst <= 1e-2 && graphed.replays > 0 && rows == eager.joined().count
        say(
            String(
                format: "padded graph check: %d steps of %d sequences as graphs of %d (%d replayed, %d captured): "
                    + "argmax equal %d/%d rows, max |dlogit| %.2e %@",
                eager.count, prompts.count, graphed.paddedSize(prompts.count) ?? 0, graphed.replays, graphed.captures,
                argmaxSame, rows, worst, ok ? "(pass)" : "(FAIL)"))
        return ok
    }

    /// Each step's logits rows (one per sequence) for `prompts` prefilled together, then decoded
    /// together with `fed[i]`'s tokens (as many steps as the shortest has).
    private func batchLogits(_ model: any LanguageModel, prompts: [[Int32]], fed: [[Int32]]) throws -> [[[Float]]] {
        let room = prompts.map { $0.count + (fed.map(\.count).min() ?? 0) + 1 }
        let base = room.indices.map { i in room[..<i].reduce(0, +) }
        let cache = try model.makeKVCache(slots: room.reduce(0, +), dtype: kvDType)
        func rows(_ out: Logits) -> [[Float]] {
            let c = out.copy()
            let v = c.vocabSize
            return (0..<prompts.count).map { i in Array(c.logits[(c.rowStart[i + 1] - 1) * v..<c.rowStart[i + 1] * v]) }
        }
        let prefill = ForwardBatch(
            sequences: prompts.indices.map { i in
                SequenceInput(
                    tokens: prompts[i], startPosition: 0,
                    kvSlots: (0..<prompts[i].count).map { Int32(base[i] + $0) })
            })
        var steps = [rows(try model.forward(prefill, cache: cache))]
        for s in 0..<((fed.map(\.count).min() ?? 1) - 1) {
            let batch = ForwardBatch(
                sequences: prompts.indices.map { i in
                    SequenceInput(row: i, tokens: [fed[i][s]], startPosition: prompts[i].count + s)
                },
                slotUpdates: prompts.indices.map { i in
                    SlotUpdate(row: i, position: prompts[i].count + s, slots: [Int32(base[i] + prompts[i].count + s)])
                })
            steps.append(rows(try model.forward(batch, cache: cache)))
        }
        return steps
    }

    /// The last row's logits after the prompt, then after each token of `fed` (one decode step each).
    private func stepLogits(_ model: any LanguageModel, prompt: [Int32], fed: [Int32]) throws -> [[Float]] {
        let cache = try model.makeKVCache(slots: prompt.count + fed.count + 1, dtype: kvDType)
        func last(_ out: Logits) -> [Float] {
            let c = out.copy()
            let v = c.vocabSize, n = c.rowStart.last ?? 0
            return Array(c.logits[(n - 1) * v..<n * v])
        }
        var rows = [last(try model.forward(Self.prefill(prompt), cache: cache))]
        for (s, t) in fed.enumerated() {
            rows.append(last(try model.forward(Self.decode(t, at: prompt.count + s), cache: cache)))
        }
        return rows
    }

    /// Greedy and teacher-forced agreement of `gpu` with `reference` over `prompts`.
    private func compare(
        _ reference: any LanguageModel, _ gpu: any LanguageModel, prompts: [[Int32]], _ say: (String) -> Void
    ) throws -> Bool {
        var exact = 0, agree = 0, total = 0
        var errors: [Float] = [], flipMargins: [Float] = []
        var refSampler = reference.makeSampler(), gpuSampler = gpu.makeSampler()
        for (i, p) in prompts.enumerated() {
            let ref = try generate(reference, &refSampler, prompt: p)
            let got = try generate(gpu, &gpuSampler, prompt: p)
            let same = zip(ref, got).prefix { $0 == $1 }.count
            if same == ref.count { exact += 1 }
            // Teacher forcing: the reference's continuation fed to both, argmax at every new position.
            let fed = p + ref.dropLast()
            let a = try allLogits(reference, fed), b = try allLogits(gpu, fed)
            let tail = p.count - 1
            var hits = 0
            for j in tail..<fed.count {
                let ra = a.row(j), rb = b.row(j)
                errors.append(zip(ra, rb).reduce(0) { max($0, abs($1.0 - $1.1)) })
                let ta = Self.argmax(ra), tb = Self.argmax(rb)
                if ta == tb { hits += 1 } else { flipMargins.append(ra[ta] - ra[tb]) }
            }
            agree += hits
            total += fed.count - tail
            say(
                "  prompt \(i) (\(p.count) tokens): greedy tokens identical for \(same)/\(ref.count); "
                    + "teacher-forced top-1 \(hits)/\(fed.count - tail)")
        }
        let rate = Double(agree) / Double(max(total, 1))
        let noise = errors.sorted()[errors.count / 2]
        let widest = flipMargins.max() ?? 0
        let ties = !flipMargins.isEmpty && widest < 2 * noise
        let verdict =
            rate >= 0.98
            ? "(pass)"
            : ties
                ? String(
                    format: "(pass: every flip a near-tie, margin <= %.4f < 2 x median max |dlogit| %.4f)", widest,
                    noise)
                : String(format: "(FAIL: below 0.98; widest flip margin %.4f, median max |dlogit| %.4f)", widest, noise)
        say(
            String(
                format: "model check: %d/%d prompts identical for %d tokens, teacher-forced top-1 %d/%d = %.4f %@",
                exact, prompts.count, steps, agree, total, rate, verdict))
        return rate >= 0.98 || ties
    }

    private static func argmax(_ row: ArraySlice<Float>) -> Int {
        var best = row.startIndex
        for j in row.indices where row[j] > row[best] { best = j }
        return best
    }

    private func greedyRow(_ logits: Logits, _ row: Int) -> SamplingRow {
        var r = SamplingRow(logitsRow: row)
        r.temperature = 0
        return r
    }

    private func generate(_ model: any LanguageModel, _ sampler: inout any TokenSampler, prompt: [Int32]) throws
        -> [Int32]
    {
        let cache = try model.makeKVCache(slots: prompt.count + steps + 1, dtype: kvDType)
        var out = try model.forward(Self.prefill(prompt), cache: cache)
        var tokens: [Int32] = []
        for s in 0..<steps {
            let t = try sampler.sample(out, SamplingBatch(rows: [greedyRow(out, out.rowCount - 1)])).tokens[0].tokenID
            tokens.append(t)
            if s == steps - 1 { break }
            out = try model.forward(Self.decode(t, at: prompt.count + s), cache: cache)
        }
        return tokens
    }

    /// `tokens` from position 0 in slots 0, 1, ... (table row 0).
    private static func prefill(_ tokens: [Int32], logits: LogitsRequest = .last) -> ForwardBatch {
        ForwardBatch(sequences: [
            SequenceInput(
                tokens: tokens, startPosition: 0, kvSlots: (0..<tokens.count).map { Int32($0) }, logits: logits)
        ])
    }

    /// One decode step of row 0: `token` at position `pos`, in slot `pos`.
    private static func decode(_ token: Int32, at pos: Int) -> ForwardBatch {
        ForwardBatch(
            sequences: [SequenceInput(row: 0, tokens: [token], startPosition: pos)],
            slotUpdates: [SlotUpdate(row: 0, position: pos, slots: [Int32(pos)])])
    }

    /// Every position's logits in one pass over `tokens`.
    private func allLogits(_ model: any LanguageModel, _ tokens: [Int32]) throws -> LogitRows {
        let cache = try model.makeKVCache(slots: tokens.count + 1, dtype: kvDType)
        let out = try model.forward(Self.prefill(tokens, logits: .all), cache: cache).copy()
        return LogitRows(values: Array(out.logits.prefix(tokens.count * out.vocabSize)), vocab: out.vocabSize)
    }
}

/// Rows of logits, one per position.
private struct LogitRows {
    let values: [Float]
    let vocab: Int
    func row(_ r: Int) -> ArraySlice<Float> { values[r * vocab..<(r + 1) * vocab] }
}
