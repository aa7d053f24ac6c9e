@testable import ServalBench

/// A unit-test double with just enough BPE-like behaviour to exercise the
/// exact-length loop: ids 0-1 are special, 2-27 are 'a'...'z', 28 is the
/// merged piece "ab", which encoding always prefers — so random ids that put
/// 'a' before 'b' shrink on re-encoding and must be topped up.
struct TestTokenizer: BenchTokenizer {
    var vocabSize: Int { 29 }

    func isSpecial(_ id: Int32) -> Bool { id < 2 }

    func encode(_ text: String) throws -> [Int32] {
        let chars = Array(text.unicodeScalars)
        var out: [Int32] = []
        var i = 0
        while i < chars.count {
            if chars[i] == "a", i + 1 < chars.count, chars[i + 1] == "b" {
                out.append(28)
                i += 2
                continue
            }
            let v = Int32(chars[i].value) - Int32(UnicodeScalar("a").value)
            guard (0..<26).contains(v) else { throw BenchError("test tokenizer: unknown char \(chars[i])") }
            out.append(v + 2)
            i += 1
        }
        return out
    }

    func decode(_ ids: [Int32]) throws -> String {
        var s = ""
        for id in ids {
            switch id {
            case 0, 1: continue
            case 28: s += "ab"
            case 2...27: s.unicodeScalars.append(UnicodeScalar(UInt8(id - 2) + UInt8(ascii: "a")))
            default: throw BenchError("test tokenizer: id \(id) out of range")
            }
        }
        return s
    }
}
