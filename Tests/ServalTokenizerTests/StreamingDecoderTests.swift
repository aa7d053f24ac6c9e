import Foundation
import Testing
@testable import ServalTokenizer

@Suite struct StreamingDecoderTests {
    /// Streaming yields the one-shot decode, and no chunk ends inside a character.
    @Test(.enabled(if: TestSupport.modelAvailable))
    func streamingMatchesOneShotDecode() throws {
        let tok = try #require(TestSupport.smollm)
        for c in try TestSupport.corpus() {
            let ids = tok.encode(c.text, addSpecialTokens: false)
            for skip in [false, true] {
                var dec = StreamingDecoder(tokenizer: tok, skipSpecialTokens: skip)
                var streamed = ""
                for id in ids {
                    let chunk = dec.push(id)
                    // A chunk cut inside a character would have decoded a replacement character.
                    #expect(!chunk.unicodeScalars.contains("\u{FFFD}"), "\(c.text.debugDescription) chunk \(chunk.debugDescription)")
                    streamed += chunk
                }
                streamed += dec.finish()
                #expect(streamed == tok.decode(ids, skipSpecialTokens: skip))
            }
        }
    }

    /// Multi-byte characters split over byte tokens come out whole, once complete.
    @Test(.enabled(if: TestSupport.modelAvailable))
    func holdsBackPartialCharacters() throws {
        let tok = try #require(TestSupport.smollm)
        let ids = tok.encode("🦙", addSpecialTokens: false)
        #expect(ids.count > 1)  // the llama emoji is several byte tokens in SmolLM2
        var dec = StreamingDecoder(tokenizer: tok, skipSpecialTokens: false)
        var chunks: [String] = []
        for id in ids { chunks.append(dec.push(id)) }
        #expect(chunks.dropLast().allSatisfy { $0.isEmpty })
        #expect(chunks.last == "🦙")
        #expect(dec.finish() == "")
    }

    /// An unfinished character at the end is flushed as U+FFFD; bad ids are ignored.
    @Test(.enabled(if: TestSupport.modelAvailable))
    func finishFlushesInvalidBytes() throws {
        let tok = try #require(TestSupport.smollm)
        let ids = tok.encode("🦙", addSpecialTokens: false)
        var dec = StreamingDecoder(tokenizer: tok, skipSpecialTokens: false)
        #expect(dec.push(-5) == "")
        #expect(dec.push(Int32(tok.vocabSize)) == "")
        #expect(dec.push(ids[0]) == "")
        #expect(dec.finish() == "\u{FFFD}")
        #expect(dec.finish() == "")
    }

    @Test func completePrefixRules() {
        // ASCII, complete 2/3/4-byte sequences, and incomplete tails.
        #expect(StreamingDecoder.completePrefix([0x41, 0x42]) == 2)
        #expect(StreamingDecoder.completePrefix([0x41, 0xC3]) == 1)
        #expect(StreamingDecoder.completePrefix([0x41, 0xC3, 0xA9]) == 3)
        #expect(StreamingDecoder.completePrefix([0xE2, 0x96]) == 0)
        #expect(StreamingDecoder.completePrefix([0xF0, 0x9F, 0xA6]) == 0)
        #expect(StreamingDecoder.completePrefix([0xF0, 0x9F, 0xA6, 0x99]) == 4)
        // A stray continuation byte cannot be completed: emit it (as U+FFFD).
        #expect(StreamingDecoder.completePrefix([0x41, 0x80]) == 2)
        #expect(StreamingDecoder.completePrefix([]) == 0)
    }
}
