/// SentencePiece BPE encoding (Llama 2 style vocabularies, `tokenizer.ggml.model`
/// = "llama"): spaces become `▁`, the text starts as one symbol per UTF-8
/// character, and the adjacent pair whose concatenation is the highest-scoring
/// token merges first (leftmost on ties) until no pair forms a token.
/// Characters left without a token fall back to their `<0xNN>` byte tokens.
struct SentencePieceScratch {
    var text: [UInt8] = []
    var start: [Int] = []
    var len: [Int] = []
    var prev: [Int] = []
    var next: [Int] = []
    var heap: [SPMBigram] = []
}

struct SPMBigram {
    var score: Float
    var left: Int
    var right: Int
    var size: Int

    /// Higher score first, then leftmost.
    @inline(__always)
    static func before(_ a: SPMBigram, _ b: SPMBigram) -> Bool {
        a.score > b.score || (a.score == b.score && a.left < b.left)
    }
}

extension Tokenizer {
    func encodeSentencePiece(
        _ bytes: UnsafeBufferPointer<UInt8>, spacePrefix: Bool, into out: inout [Int32],
        scratch: inout EncodeScratch
    ) {
        var s = scratch.spm
        defer { scratch.spm = s }
        s.text.removeAll(keepingCapacity: true)
        if spacePrefix { s.text.append(contentsOf: [0xE2, 0x96, 0x81]) }
        for b in bytes {
            if b == 0x20 { s.text.append(contentsOf: [0xE2, 0x96, 0x81]) } else { s.text.append(b) }
        }
        if s.text.isEmpty { return }

        s.start.removeAll(keepingCapacity: true)
        s.len.removeAll(keepingCapacity: true)
        s.prev.removeAll(keepingCapacity: true)
        s.next.removeAll(keepingCapacity: true)
        s.heap.removeAll(keepingCapacity: true)
        var off = 0
        while off < s.text.count {
            let b = s.text[off]
            let l = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
            let n = min(l, s.text.count - off)
            s.prev.append(s.start.count - 1)
            s.start.append(off)
            s.len.append(n)
            off += n
            s.next.append(off == s.text.count ? -1 : s.start.count)
        }

        func tokenID(_ lo: Int, _ n: Int, _ text: [UInt8]) -> Int32? {
            vocab.textToID[String(decoding: text[lo..<(lo + n)], as: UTF8.self)]
        }
        func tryAdd(_ l: Int, _ r: Int, _ s: inout SentencePieceScratch) {
            guard l >= 0, r >= 0 else { return }
            let size = s.len[l] + s.len[r]
            guard let id = tokenID(s.start[l], size, s.text) else { return }
            push(&s.heap, SPMBigram(score: vocab.scores[Int(id)], left: l, right: r, size: size))
        }
        for i in 1..<s.start.count { tryAdd(i - 1, i, &s) }
        while let bg = pop(&s.heap) {
            let l = bg.left, r = bg.right
            guard s.len[l] > 0, s.len[r] > 0, s.len[l] + s.len[r] == bg.size, s.next[l] == r else { continue }
            s.len[l] += s.len[r]
            s.len[r] = 0
            s.next[l] = s.next[r]
            if s.next[r] >= 0 { s.prev[s.next[r]] = l }
            tryAdd(s.prev[l], l, &s)
            tryAdd(l, s.next[l], &s)
        }
        var i = 0
        while i >= 0 {
            if let id = tokenID(s.start[i], s.len[i], s.text) {
                out.append(id)
            } else {
                for k in s.start[i]..<(s.start[i] + s.len[i]) {
                    let t = byteTokens[Int(s.text[k])]
                    if t >= 0 {
                        out.append(t)
                    } else if let unk = unknownID {
                        out.append(unk)
                    }
                }
            }
            i = s.next[i]
        }
    }

    private func push(_ heap: inout [SPMBigram], _ x: SPMBigram) {
        heap.append(x)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard SPMBigram.before(heap[i], heap[p]) else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    private func pop(_ heap: inout [SPMBigram]) -> SPMBigram? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1
                if l >= heap.count { break }
                var m = l
                if l + 1 < heap.count && SPMBigram.before(heap[l + 1], heap[l]) { m = l + 1 }
                guard SPMBigram.before(heap[m], heap[i]) else { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
