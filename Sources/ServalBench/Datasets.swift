import ServalBase
import Foundation

/// The request sets bench-serving can generate or load (SGLang's
/// `--dataset-name` values that make sense without downloads).
public enum DatasetSpec: Sendable, Equatable {
    /// Unique random prompts; lengths drawn uniformly from
    /// [len * rangeRatio, len] as SGLang does (ratio 1 = fixed length).
    case random(inputLen: Int, outputLen: Int, rangeRatio: Double)
    /// `numGroups` shared system prompts, each followed by `promptsPerGroup`
    /// distinct questions: the RadixAttention workload.
    case generatedSharedPrefix(
        numGroups: Int, promptsPerGroup: Int, systemPromptLen: Int, questionLen: Int, outputLen: Int)
    /// ShareGPT-format JSON: conversations[0] (human) is the prompt, the
    /// length of conversations[1] (gpt) is the output length unless fixed.
    case shareGPT(path: String, fixedOutputLen: Int?, contextLen: Int?)

    public var name: String {
        switch self {
        case .random: return "random"
        case .generatedSharedPrefix: return "generated-shared-prefix"
        case .shareGPT: return "sharegpt"
        }
    }
}

public enum DatasetBuilder {
    /// The rows to send. `numPrompts` applies to random and ShareGPT; the
    /// shared-prefix set has numGroups × promptsPerGroup rows, shuffled so
    /// groups interleave as in SGLang.
    public static func build(_ spec: DatasetSpec, numPrompts: Int, tokenizer: any BenchTokenizer, seed: UInt64) throws
        -> [DatasetRow]
    {
        var rng = SeededGenerator(seed: seed)
        switch spec {
        case let .random(inputLen, outputLen, rangeRatio):
            guard inputLen > 0, outputLen > 0 else {
                throw BenchError(
                    "--random-input-len and --random-output-len must be positive (got \(inputLen), \(outputLen))")
            }
            guard (0...1).contains(rangeRatio) else {
                throw BenchError("--random-range-ratio must be in [0, 1] (got \(rangeRatio))")
            }
            let builder = try PromptBuilder(tokenizer: tokenizer)
            var rows: [DatasetRow] = []
            for _ in 0..<numPrompts {
                let inLen = drawLength(inputLen, rangeRatio, &rng)
                let outLen = drawLength(outputLen, rangeRatio, &rng)
                let p = try builder.exactPrompt(length: inLen, rng: &rng)
                rows.append(DatasetRow(ids: p.ids, text: p.text, outputLen: outLen))
            }
            return rows

        case let .generatedSharedPrefix(groups, perGroup, sysLen, qLen, outLen):
            guard groups > 0, perGroup > 0, sysLen >= 0, qLen > 0, outLen > 0 else {
                throw BenchError(
                    "--gsp-num-groups, --gsp-prompts-per-group, --gsp-question-len and --gsp-output-len must be positive"
                )
            }
            let builder = try PromptBuilder(tokenizer: tokenizer)
            var rows: [DatasetRow] = []
            for _ in 0..<groups {
                let system = try builder.exactPrompt(length: sysLen, rng: &rng)
                for _ in 0..<perGroup {
                    let p = try builder.exactContinuation(of: system.ids, length: qLen, rng: &rng)
                    rows.append(DatasetRow(ids: p.ids, text: p.text, outputLen: outLen))
                }
            }
            rows.shuffle(using: &rng)
            return rows

        case let .shareGPT(path, fixedOutputLen, contextLen):
            return try loadShareGPT(
                path: path, numPrompts: numPrompts, fixedOutputLen: fixedOutputLen,
                contextLen: contextLen, tokenizer: tokenizer, rng: &rng)
        }
    }

    static func drawLength(_ full: Int, _ ratio: Double, _ rng: inout SeededGenerator) -> Int {
        let lo = max(1, Int((Double(full) * ratio).rounded(.down)))
        guard lo < full else { return full }
        return lo + Int(rng.next() % UInt64(full - lo + 1))
    }

    static func loadShareGPT(
        path: String, numPrompts: Int, fixedOutputLen: Int?, contextLen: Int?,
        tokenizer: any BenchTokenizer, rng: inout SeededGenerator
    ) throws -> [DatasetRow] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw BenchError("cannot read dataset file \(path): \(error.localizedDescription)")
        }
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw BenchError("dataset file \(path) is not valid JSON: \(error.localizedDescription)")
        }
        guard let entries = root as? [Any] else {
            throw BenchError("dataset file \(path) must hold a JSON array of {\"conversations\": [...]} objects")
        }
        // Keep entries with a human turn followed by a gpt turn, in a seeded order.
        var pairs: [(String, String)] = []
        for entry in entries {
            guard let obj = entry as? [String: Any],
                let conv = (obj["conversations"] ?? obj["conversation"]) as? [[String: Any]],
                conv.count >= 2,
                let prompt = conv[0]["value"] as? String,
                let answer = conv[1]["value"] as? String
            else { continue }
            pairs.append((prompt, answer))
        }
        guard !pairs.isEmpty else {
            throw BenchError(
                "dataset file \(path) has no usable entries (each needs conversations[0].value and conversations[1].value)"
            )
        }
        pairs.shuffle(using: &rng)
        let maxContext = contextLen ?? 2048
        var rows: [DatasetRow] = []
        for (prompt, answer) in pairs {
            if rows.count >= numPrompts { break }
            let ids = try tokenizer.encode(prompt)
            let outLen = try fixedOutputLen ?? tokenizer.encode(answer).count
            // SGLang's filter: drop tiny or oversized conversations.
            if ids.count < 2 || outLen < 2 { continue }
            if contextLen == nil && ids.count > 1024 { continue }
            if ids.count + outLen > maxContext { continue }
            rows.append(DatasetRow(ids: ids, text: prompt, outputLen: outLen))
        }
        guard !rows.isEmpty else {
            throw BenchError(
                "dataset file \(path): no conversation fits the length limits (prompt ≤ 1024, prompt + output ≤ \(maxContext) tokens)"
            )
        }
        if rows.count < numPrompts {
            FileHandleOutput.stderr(
                "note: dataset \(path) gave \(rows.count) usable prompts, fewer than --num-prompts \(numPrompts)\n")
        }
        return rows
    }
}
