import ServalBase
import Testing
@testable import ServalEngine

@Suite struct StopCheckerTests {
    func checker(_ stops: [String], ignoreEOS: Bool = false, stopTokenIDs: [Int32] = []) -> StopChecker {
        var p = SamplingParams()
        p.stop = stops
        p.ignoreEOS = ignoreEOS
        p.stopTokenIDs = stopTokenIDs
        p.maxNewTokens = 10
        return StopChecker(params: p, endOfGeneration: [0], maxTotalTokens: 100)
    }

    /// Feeds pieces one at a time; returns everything emitted and the match.
    func run(_ c: inout StopChecker, _ pieces: [String]) -> (String, String?) {
        var out = ""
        for piece in pieces {
            let r = c.feed(piece)
            out += r.emit
            if let m = r.matched { return (out, m) }
        }
        return (out + c.flush(), nil)
    }

    @Test func stopStringAcrossTokenBoundariesIsNeverEmitted() {
        var c = checker(["STOP"])
        let (text, matched) = run(&c, ["Hello S", "T", "O", "P and more"])
        #expect(text == "Hello ")
        #expect(matched == "STOP")
    }

    @Test func heldTextIsReleasedWhenItIsNotAStop() {
        var c = checker(["STOP"])
        #expect(c.feed("ab ST").emit == "ab ")  // "ST" may start STOP
        #expect(c.feed("A").emit == "STA")  // it did not
        #expect(c.flush().isEmpty)
        var d = checker(["STOP"])
        _ = d.feed("x S")
        #expect(d.flush() == "S")  // ended for another reason: held text goes out
    }

    @Test func earliestOfSeveralStopsWins() {
        var c = checker(["world", "lo w"])
        let (text, matched) = run(&c, ["hel", "lo world"])
        #expect(text == "hel")
        #expect(matched == "lo w")
    }

    @Test func everyPieceSplitOfATextFindsTheStop() {
        let text = "one two <|end|> three"
        for cut1 in 0...text.count {
            for cut2 in cut1...text.count {
                let a = String(text.prefix(cut1))
                let b = String(text.dropFirst(cut1).prefix(cut2 - cut1))
                let c = String(text.dropFirst(cut2))
                var checker = checker(["<|end|>"])
                let (out, matched) = run(&checker, [a, b, c])
                #expect(out == "one two ")
                #expect(matched == "<|end|>")
            }
        }
    }

    @Test func stopTokensAndEOS() {
        #expect(checker([]).isStopToken(0))
        #expect(!checker([], ignoreEOS: true).isStopToken(0))
        #expect(checker([], ignoreEOS: true, stopTokenIDs: [5]).isStopToken(5))
    }

    @Test func lengthLimits() {
        let c = checker([])
        #expect(!c.reachedLength(generated: 9, totalTokens: 50))
        #expect(c.reachedLength(generated: 10, totalTokens: 50))
        #expect(c.reachedLength(generated: 3, totalTokens: 100))
    }
}

@Suite struct IncrementalDetokenizerTests {
    /// Tokens: 1 = "a", 2 = first byte of "é", 3 = its second byte, 4 = " b", 0 = EOS (special).
    let decoder = TableDecoder(table: [Array("<eos>".utf8), Array("a".utf8), [0xC3], [0xA9], Array(" b".utf8)])

    @Test func holdsBackHalfCharacters() {
        var d = IncrementalDetokenizer(decoder: decoder, skipSpecialTokens: true)
        #expect(d.append(1) == "a")
        #expect(d.append(2) == "")  // half of é
        #expect(d.append(3) == "é")
        #expect(d.append(4) == " b")
        #expect(d.append(0) == "")  // special, skipped
    }

    @Test func flushReleasesAnUnfinishedCharacter() {
        var d = IncrementalDetokenizer(decoder: decoder, skipSpecialTokens: true)
        #expect(d.append(2) == "")
        #expect(d.flush() == "\u{FFFD}")
    }

    @Test func promptContextIsNotEmitted() {
        var d = IncrementalDetokenizer(decoder: decoder, skipSpecialTokens: false, context: [1, 4])
        #expect(d.append(1) == "a")
        #expect(d.append(0) == "<eos>")
    }

    @Test func piecesConcatenateToTheFullDecode() {
        var rng = SeededGenerator(seed: 3)
        var tokens: [Int32] = []
        var d = IncrementalDetokenizer(decoder: decoder, skipSpecialTokens: true)
        var text = ""
        for _ in 0..<200 {
            // Keep é's two bytes together so the full decode has no replacement characters.
            let pick = Int32(rng.next() % 3)
            let ids: [Int32] = pick == 0 ? [1] : pick == 1 ? [2, 3] : [4]
            for t in ids {
                tokens.append(t)
                text += d.append(t)
            }
        }
        text += d.flush()
        #expect(text == decoder.decodeText(tokens, skipSpecialTokens: true))
    }
}

/// `stop_regex`: the first pattern to match the output ends the request; the text stays.
@Suite struct StopRegexTests {
    @Test func regexAcrossPiecesEndsWithThePattern() {
        var p = SamplingParams()
        p.stopRegex = ["[0-9]{3}-[0-9]{4}", "zzz"]
        var c = StopChecker(params: p, endOfGeneration: [], maxTotalTokens: 100)
        #expect(c.feed("call 55").matched == nil)
        #expect(c.feed("5-12").matched == nil)
        let last = c.feed("34 now")
        #expect(last.matched == "[0-9]{3}-[0-9]{4}")
        #expect(last.emit == "34 now")
    }

    @Test func stopStringsStillWinAndAreCut() {
        var p = SamplingParams()
        p.stop = ["END"]
        p.stopRegex = ["E.D"]
        var c = StopChecker(params: p, endOfGeneration: [], maxTotalTokens: 100)
        let r = c.feed("abc END tail")
        #expect(r.matched == "END")
        #expect(r.emit == "abc ")
    }
}
