import Foundation

extension Tokenizer {
    /// Token ids of `text`. `addSpecialTokens` adds BOS (and EOS) where the
    /// model asks for them; `parseSpecial` turns special-token text such as
    /// `<|im_start|>` into its token (user-defined added tokens are always
    /// recognised, as in HF and llama.cpp).
    public func encode(_ text: String, addSpecialTokens: Bool = true, parseSpecial: Bool = true) -> [Int32] {
        var out: [Int32] = []
        var utf8 = Array(text.utf8)
        out.reserveCapacity(utf8.count / 3 + 4)
        if addSpecialTokens && addBOS, let bos = bosTokenID { out.append(bos) }
        let fragments = partition(utf8, parseSpecial: parseSpecial)
        var scratch = EncodeScratch()
        var prevSpecial = true
        utf8.withUnsafeMutableBufferPointer { buf in
            for f in fragments {
                switch f {
                case .token(let id):
                    out.append(id)
                    prevSpecial = true
                case .text(let lo, let hi):
                    let bytes = UnsafeBufferPointer(rebasing: buf[lo..<hi])
                    switch model {
                    case .byteLevelBPE:
                        encodeByteLevel(bytes, into: &out, scratch: &scratch)
                    case .sentencePiece:
                        encodeSentencePiece(
                            bytes, spacePrefix: addSpacePrefix && prevSpecial, into: &out, scratch: &scratch)
                    }
                    prevSpecial = false
                }
            }
        }
        if addSpecialTokens && addEOS, let eos = eosTokenID { out.append(eos) }
        return out
    }

    enum Fragment {
        case text(Int, Int)
        case token(Int32)
    }

    /// Splits special tokens out of the text, longest token first over the
    /// whole text (llama.cpp's order), honouring lstrip/rstrip.
    func partition(_ text: [UInt8], parseSpecial: Bool) -> [Fragment] {
        var frags: [Fragment] = text.isEmpty ? [] : [.text(0, text.count)]
        if specials.isEmpty || text.isEmpty { return frags }
        text.withUnsafeBufferPointer { t in
            for sp in specials {
                if !parseSpecial && !sp.alwaysMatched { continue }
                let first = sp.bytes[0]
                let len = sp.bytes.count
                var i = 0
                var next: [Fragment] = []
                var changed = false
                while i < frags.count {
                    guard case .text(var lo, let hi) = frags[i] else {
                        if changed { next.append(frags[i]) }
                        i += 1
                        continue
                    }
                    var pieces: [Fragment] = []
                    var found = false
                    var p = lo
                    while p + len <= hi {
                        // Jump to the next occurrence of the first byte.
                        guard let base = t.baseAddress,
                            let hit = memchr(base + p, Int32(first), hi - len + 1 - p)
                        else { break }
                        p = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(hit))
                        if sp.bytes.withUnsafeBufferPointer({ memEqual(t, p, $0) }) {
                            found = true
                            var leftEnd = p
                            if sp.lstrip { while leftEnd > lo && isSpace(t[leftEnd - 1]) { leftEnd -= 1 } }
                            if leftEnd > lo { pieces.append(.text(lo, leftEnd)) }
                            pieces.append(.token(sp.id))
                            var rightStart = p + len
                            if sp.rstrip { while rightStart < hi && isSpace(t[rightStart]) { rightStart += 1 } }
                            lo = rightStart
                            p = rightStart
                        } else {
                            p += 1
                        }
                    }
                    if found {
                        if lo < hi { pieces.append(.text(lo, hi)) }
                        if !changed {
                            changed = true
                            next.append(contentsOf: frags[0..<i])
                        }
                        next.append(contentsOf: pieces)
                    } else if changed {
                        next.append(frags[i])
                    }
                    i += 1
                }
                if changed { frags = next }
            }
        }
        return frags
    }

    /// Byte-level BPE of one text fragment: pre-tokenize into words, then merge each word's bytes.
    func encodeByteLevel(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [Int32], scratch: inout EncodeScratch) {
        scratch.decodeScalars(bytes)
        let ends = scratch.cpts.withUnsafeBufferPointer { c in
            scratch.cls.withUnsafeBufferPointer { k in preTokenizer.split(c, k) }
        }
        var start = 0
        for end in ends {
            let lo = scratch.byteOffsets[start]
            let hi = scratch.byteOffsets[end]
            start = end
            if ignoreMerges, let id = wordToID[Array(bytes[lo..<hi])] {
                out.append(id)
                continue
            }
            scratch.symbols.removeAll(keepingCapacity: true)
            for i in lo..<hi { scratch.symbols.append(byteTokens[Int(bytes[i])]) }
            let before = out.count
            merges.merge(&scratch.symbols, scratch: &scratch.bpe, into: &out)
            // A byte missing from the vocabulary has no token; drop it as llama.cpp does.
            if out[before...].contains(-1) { out.removeAll(where: { $0 < 0 }) }
        }
    }
}

/// Per-call buffers for encoding.
struct EncodeScratch {
    var cpts: [UInt32] = []
    var cls: [CharClass] = []
    /// Byte offset of each scalar, plus the end.
    var byteOffsets: [Int] = []
    var symbols: [Int32] = []
    var bpe = BPEScratch()
    var spm = SentencePieceScratch()

    /// Decodes UTF-8 (valid: it comes from a String, split at scalar boundaries) into scalars and classes.
    mutating func decodeScalars(_ b: UnsafeBufferPointer<UInt8>) {
        cpts.removeAll(keepingCapacity: true)
        cls.removeAll(keepingCapacity: true)
        byteOffsets.removeAll(keepingCapacity: true)
        var i = 0
        let n = b.count
        while i < n {
            byteOffsets.append(i)
            let c0 = UInt32(b[i])
            var c: UInt32
            var len: Int
            if c0 < 0x80 {
                c = c0; len = 1
            } else if c0 < 0xE0 {
                c = c0 & 0x1F; len = 2
            } else if c0 < 0xF0 {
                c = c0 & 0x0F; len = 3
            } else {
                c = c0 & 0x07; len = 4
            }
            if i + len > n { len = n - i }
            var j = 1
            while j < len {
                c = c << 6 | (UInt32(b[i + j]) & 0x3F)
                j += 1
            }
            cpts.append(c)
            cls.append(CharClass.of(c))
            i += len
        }
        byteOffsets.append(n)
    }
}

@inline(__always)
func memEqual(_ t: UnsafeBufferPointer<UInt8>, _ at: Int, _ pattern: UnsafeBufferPointer<UInt8>) -> Bool {
    for k in 0..<pattern.count where t[at + k] != pattern[k] { return false }
    return true
}

/// C `isspace` in the C locale, which llama.cpp's lstrip/rstrip use.
@inline(__always)
func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }
