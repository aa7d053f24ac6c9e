/// Splits text into words before BPE, replacing the pre-tokenizer regexes of
/// the supported model families with hand-written scanners over Unicode
/// scalars. Each regex is one `Step`; a style applies its steps in sequence,
/// each step splitting every piece the previous one produced (text the regex
/// does not match stays a piece of its own), which is how llama.cpp and HF
/// `Sequence` pre-tokenizers compose. The scanners follow the exact
/// semantics of the regexes as llama.cpp implements them (llama.cpp is our
/// reference for ids), including `\s+(?!\S)` and case-insensitive contractions.
struct PreTokenizer: Sendable {
    enum Step: Sendable, Equatable {
        /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
        case gpt2
        /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
        /// (`maxDigits` 3); with `maxDigits` 1 it is Qwen2's `\p{N}`; `marks` adds \p{M} to
        /// the letter runs and removes it from the punctuation runs (Qwen3.5).
        case llama3(maxDigits: Int, marks: Bool)
        /// Every scalar of the class is a piece of its own (`\p{N}`, `[\r\n]`).
        case isolate(Matcher)
        /// Maximal runs of the class, at most `max` long each (`\p{N}{1,3}`, `[一-龥]+`).
        case runs(Matcher, max: Int)
        /// `\s?X+`: an optional whitespace then a run of the class.
        case optionalSpaceRun(Matcher)
        /// `\s+$`: the whitespace at the very end of a piece.
        case trailingWhitespace
        /// DeepSeek-V3's word regex:
        /// `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
        case deepseekV3Words
    }

    /// A set of scalars: Unicode classes and explicit ranges.
    struct Matcher: Sendable, Equatable {
        var classes: CharClass = []
        var ranges: [ClosedRange<UInt32>] = []

        @inline(__always)
        func matches(_ c: UInt32, _ cls: CharClass) -> Bool {
            if !cls.isDisjoint(with: classes) { return true }
            for r in ranges where r.contains(c) { return true }
            return false
        }

        static let newline = Matcher(ranges: [0x0A...0x0A, 0x0D...0x0D])
        static let number = Matcher(classes: .number)
        static let letter = Matcher(classes: .letter)
        static let punctuation = Matcher(classes: .punctuation)
        /// `[一-龥぀-ゟ゠-ヿ]`: CJK ideographs, hiragana, katakana (DeepSeek-V3).
        static let cjkKana = Matcher(ranges: [0x4E00...0x9FA5, 0x3040...0x309F, 0x30A0...0x30FF])
        /// `[一-龥ࠀ-一가-퟿]` (DeepSeek LLM/Coder).
        static let cjkHangul = Matcher(ranges: [0x4E00...0x9FA5, 0x0800...0x4E00, 0xAC00...0xD7FF])
    }

    let steps: [Step]

    /// Word boundaries of `cpts[0..<n]`: the exclusive end of every word, in order.
    func split(_ cpts: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<CharClass>) -> [Int] {
        var ends = [cpts.count]
        if cpts.isEmpty { return [] }
        var next: [Int] = []
        for step in steps {
            next.removeAll(keepingCapacity: true)
            next.reserveCapacity(ends.count * 2)
            var start = 0
            for end in ends {
                var s = Scanner(cpts: cpts, cls: cls, start: start, end: end, out: [])
                swap(&s.out, &next)  // hand the buffer over without a copy-on-write copy
                s.run(step)
                swap(&s.out, &next)
                start = end
            }
            swap(&ends, &next)
        }
        return ends
    }
}

/// Scans one piece `[start, end)` with one step, appending word ends to `out`.
private struct Scanner {
    let cpts: UnsafeBufferPointer<UInt32>
    let cls: UnsafeBufferPointer<CharClass>
    let start: Int
    let end: Int
    var out: [Int]
    var prevEnd: Int

    init(cpts: UnsafeBufferPointer<UInt32>, cls: UnsafeBufferPointer<CharClass>, start: Int, end: Int, out: [Int]) {
        self.cpts = cpts
        self.cls = cls
        self.start = start
        self.end = end
        self.out = out
        self.prevEnd = start
    }

    static let outOfRange: UInt32 = 0xFFFF_FFFF

    @inline(__always) func cpt(_ i: Int) -> UInt32 { i < end ? cpts[i] : Scanner.outOfRange }
    /// Class of the scalar at `i`; empty past the end of the piece.
    @inline(__always) func flags(_ i: Int) -> CharClass { i < end ? cls[i] : [] }
    @inline(__always) func isWS(_ i: Int) -> Bool { flags(i).contains(.whitespace) }
    @inline(__always) func isL(_ i: Int) -> Bool { flags(i).contains(.letter) }
    @inline(__always) func isN(_ i: Int) -> Bool { flags(i).contains(.number) }

    /// Ends a word at `e` (empty words are dropped); returns its length.
    @inline(__always) @discardableResult
    mutating func add(_ e: Int) -> Int {
        let len = e - prevEnd
        if len > 0 { out.append(e) }
        prevEnd = e
        return len
    }

    mutating func run(_ step: PreTokenizer.Step) {
        switch step {
        case .gpt2: gpt2()
        case .llama3(let maxDigits, let marks): llama3(maxDigits: maxDigits, marks: marks)
        case .isolate(let m):
            var p = start
            while p < end {
                if m.matches(cpts[p], cls[p]) { add(p); add(p + 1) }
                p += 1
            }
            add(end)
        case .runs(let m, let maxLen):
            var p = start
            while p < end {
                if m.matches(cpts[p], cls[p]) {
                    add(p)
                    var q = p
                    while q < end && m.matches(cpts[q], cls[q]) {
                        q += 1
                        if q - prevEnd >= maxLen { add(q) }
                    }
                    add(q)
                    p = q
                } else {
                    p += 1
                }
            }
            add(end)
        case .optionalSpaceRun(let m):
            var p = start
            while p < end {
                let here = m.matches(cpts[p], cls[p])
                if here || (isWS(p) && p + 1 < end && m.matches(cpts[p + 1], cls[p + 1])) {
                    add(p)
                    var q = here ? p + 1 : p + 2
                    while q < end && m.matches(cpts[q], cls[q]) { q += 1 }
                    add(q)
                    p = q
                } else {
                    p += 1
                }
            }
            add(end)
        case .trailingWhitespace:
            var p = end
            while p > start && cls[p - 1].contains(.whitespace) { p -= 1 }
            add(p)
            add(end)
        case .deepseekV3Words: deepseekV3()
        }
    }

    /// Contraction at `pos` ('s 't 'm 'd 're 've 'll), optionally case-insensitive; its length or 0.
    @inline(__always)
    func contraction(_ pos: Int, caseInsensitive: Bool) -> Int {
        guard cpt(pos) == 0x27, pos + 1 < end else { return 0 }
        func lower(_ c: UInt32) -> UInt32 {
            if caseInsensitive, c >= 0x41, c <= 0x5A { return c + 32 }
            return c
        }
        let a = lower(cpt(pos + 1))
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return 2 }  // s t m d
        if pos + 2 < end {
            let b = lower(cpt(pos + 2))
            // 're 've 'll
            if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return 3 }
        }
        return 0
    }

    mutating func gpt2() {
        var pos = start
        while pos < end {
            let c = cpts[pos]
            let n = contraction(pos, caseInsensitive: false)
            if n > 0 { pos += add(pos + n); continue }

            let sp = c == 0x20 ? 1 : 0
            var f2 = sp == 1 ? flags(pos + 1) : cls[pos]
            if f2.contains(.letter) {
                pos += sp
                while f2.contains(.letter) { pos += 1; f2 = flags(pos) }
                add(pos)
                continue
            }
            if f2.contains(.number) {
                pos += sp
                while f2.contains(.number) { pos += 1; f2 = flags(pos) }
                add(pos)
                continue
            }
            if f2.isDisjoint(with: [.whitespace, .letter, .number]) && !f2.isEmpty {
                pos += sp
                while f2.isDisjoint(with: [.whitespace, .letter, .number]) && !f2.isEmpty { pos += 1; f2 = flags(pos) }
                add(pos)
                continue
            }
            var nws = 0
            while isWS(pos + nws) { nws += 1 }
            if nws > 1 && pos + nws < end {  // \s+(?!\S): leave the last space to the next word
                pos += nws - 1
                add(pos)
                continue
            }
            if nws > 0 {
                pos += nws
                add(pos)
                continue
            }
            pos += 1
            add(pos)
        }
    }

    mutating func llama3(maxDigits: Int, marks: Bool) {
        let letterLike: CharClass = marks ? [.letter, .mark] : .letter
        let notPunct: CharClass = marks ? [.whitespace, .letter, .number, .mark] : [.whitespace, .letter, .number]
        var pos = start
        while pos < end {
            let c = cpts[pos]
            let f = cls[pos]
            let n = contraction(pos, caseInsensitive: true)
            if n > 0 { pos += add(pos + n); continue }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == 0x0D || c == 0x0A || f.contains(.number)) {
                if !f.isDisjoint(with: letterLike) || !flags(pos + 1).isDisjoint(with: letterLike) {
                    pos += 1
                    while !flags(pos).isDisjoint(with: letterLike) { pos += 1 }
                    add(pos)
                    continue
                }
            }
            // \p{N}{1,maxDigits}
            if f.contains(.number) {
                var ini = pos
                while isN(pos) {
                    pos += 1
                    if pos - ini >= maxDigits { add(pos); ini = pos }
                }
                add(pos)
                continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            var f2 = c == 0x20 ? flags(pos + 1) : f
            if f2.isDisjoint(with: notPunct) && !f.isEmpty {
                pos += c == 0x20 ? 1 : 0
                while f2.isDisjoint(with: notPunct) && !f2.isEmpty { pos += 1; f2 = flags(pos) }
                var c2 = cpt(pos)
                while c2 == 0x0D || c2 == 0x0A { pos += 1; c2 = cpt(pos) }
                add(pos)
                continue
            }
            var nws = 0
            var lastNewlineEnd = 0
            while isWS(pos + nws) {
                let c2 = cpts[pos + nws]
                if c2 == 0x0D || c2 == 0x0A { lastNewlineEnd = pos + nws + 1 }
                nws += 1
            }
            if lastNewlineEnd > 0 {  // \s*[\r\n]+
                pos = lastNewlineEnd
                add(pos)
                continue
            }
            if nws > 1 && pos + nws < end {  // \s+(?!\S)
                pos += nws - 1
                add(pos)
                continue
            }
            if nws > 0 {
                pos += nws
                add(pos)
                continue
            }
            pos += 1
            add(pos)
        }
    }

    /// Leftmost-first alternation, as the ECMAScript engine llama.cpp uses runs it.
    mutating func deepseekV3() {
        @inline(__always) func isAsciiPunct(_ c: UInt32) -> Bool {
            (0x21...0x2F).contains(c) || (0x3A...0x40).contains(c) || (0x5B...0x60).contains(c)
                || (0x7B...0x7E).contains(c)
        }
        @inline(__always) func isAsciiLetter(_ c: UInt32) -> Bool {
            (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c)
        }
        let lm: CharClass = [.letter, .mark]
        let ps: CharClass = [.punctuation, .symbol]
        var pos = start
        while pos < end {
            let c = cpts[pos]
            let f = cls[pos]
            // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
            if isAsciiPunct(c) && pos + 1 < end && isAsciiLetter(cpts[pos + 1]) {
                pos += 2
                while pos < end && isAsciiLetter(cpts[pos]) { pos += 1 }
                add(pos)
                continue
            }
            // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
            let optional = c != 0x0D && c != 0x0A && f.isDisjoint(with: [.letter, .punctuation, .symbol])
            if (optional && !flags(pos + 1).isDisjoint(with: lm)) || !f.isDisjoint(with: lm) {
                pos += 1
                while !flags(pos).isDisjoint(with: lm) { pos += 1 }
                add(pos)
                continue
            }
            // ' ?[\p{P}\p{S}]+[\r\n]*'
            let sp = c == 0x20 ? 1 : 0
            if !flags(pos + sp).isDisjoint(with: ps) {
                pos += sp
                while !flags(pos).isDisjoint(with: ps) { pos += 1 }
                while cpt(pos) == 0x0D || cpt(pos) == 0x0A { pos += 1 }
                add(pos)
                continue
            }
            var nws = 0
            var lastNewlineEnd = 0
            while isWS(pos + nws) {
                let c2 = cpts[pos + nws]
                if c2 == 0x0D || c2 == 0x0A { lastNewlineEnd = pos + nws + 1 }
                nws += 1
            }
            if lastNewlineEnd > 0 { pos = lastNewlineEnd; add(pos); continue }
            if nws > 1 && pos + nws < end { pos += nws - 1; add(pos); continue }
            if nws > 0 { pos += nws; add(pos); continue }
            pos += 1
            add(pos)
        }
    }
}
