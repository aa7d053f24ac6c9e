import Foundation
import Testing
@testable import ServalModels
import ServalTestSupport

/// Our forward pass against llama.cpp on the same GGUF: the fixture holds
/// llama.cpp's greedy 32 tokens for each prompt (scripts/fixtures/make-llama-reference.py).
@Suite struct LlamaCppNumericsTests {
    @Test(.enabled(if: TestModel.isPresent))
    func greedyContinuationsMatchLlamaCpp() throws {
        let ref = try LlamaReference.load()
        #expect(ref.cases.count >= 8)
        let model = try LlamaModel.load(gguf: TestModel.path, threads: 2)

        // Teacher forcing: feed prompt + llama.cpp's tokens, all prompts in ONE
        // batch, and read our top-1 at each generated position. When every
        // top-1 of a prompt agrees, our greedy continuation is identical to
        // llama.cpp's by induction.
        var seqs: [SequenceInput] = []
        var nextSlot: Int32 = 0
        for c in ref.cases {
            let tokens = c.prompt_ids + c.greedy_ids.dropLast()
            let slots = (0..<Int32(tokens.count)).map { nextSlot + $0 }
            nextSlot += Int32(tokens.count)
            seqs.append(SequenceInput(tokens: tokens, startPosition: 0, kvSlots: slots, logits: .all))
        }
        let cache = try model.makeKVCache(slots: Int(nextSlot))
        let out = try model.forward(ForwardBatch(sequences: seqs), cache: cache).copy()
        var agree = 0, total = 0, exactPrompts = 0
        for (i, c) in ref.cases.enumerated() {
            let rows = out.rows(ofSequence: i)
            var firstMismatch: Int? = nil
            for (j, expected) in c.greedy_ids.enumerated() {
                let r = rows.lowerBound + c.prompt_ids.count - 1 + j
                let row = out.logits[(r * out.vocabSize)..<((r + 1) * out.vocabSize)]
                let top = row.indices.max { row[$0] < row[$1] }! - r * out.vocabSize
                total += 1
                if Int32(top) == expected { agree += 1 } else if firstMismatch == nil { firstMismatch = j }
            }
            if let m = firstMismatch {
                print(
                    "prompt \(i) (\(c.prompt.prefix(30).debugDescription)): first top-1 difference at generated token \(m)"
                )
            } else {
                exactPrompts += 1
            }
        }
        let rate = Double(agree) / Double(total)
        print(
            "llama.cpp agreement: \(exactPrompts)/\(ref.cases.count) prompts identical for 32 tokens, teacher-forced top-1 \(agree)/\(total) = \(rate)"
        )
        #expect(exactPrompts == ref.cases.count || rate >= 0.98)
    }
}
