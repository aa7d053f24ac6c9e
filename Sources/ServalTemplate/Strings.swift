/// Python `str` operations on code points (Python indexes strings by code point, not grapheme).
enum Strings {
    static func isSpace(_ u: Unicode.Scalar) -> Bool {
        // Python's str.isspace / str.split() whitespace set.
        switch u.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    static func strip(_ s: String, chars: String?, left: Bool, right: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        let drop = { (u: Unicode.Scalar) -> Bool in set.map { $0.contains(u) } ?? isSpace(u) }
        var scalars = Array(s.unicodeScalars)[...]
        if left { while let f = scalars.first, drop(f) { scalars.removeFirst() } }
        if right { while let l = scalars.last, drop(l) { scalars.removeLast() } }
        return String(String.UnicodeScalarView(scalars))
    }

    /// Python str.split(sep, maxsplit); `sep == nil` splits on whitespace runs and drops empties.
    static func split(_ s: String, sep: String?, maxSplit: Int, fromRight: Bool = false) -> [String] {
        let u = Array(s.unicodeScalars)
        var parts: [String] = []
        if let sep {
            let p = Array(sep.unicodeScalars)
            if fromRight {
                var end = u.count
                var i = u.count - p.count
                var splits = 0
                while i >= 0 && (maxSplit < 0 || splits < maxSplit) {
                    if Array(u[i..<i + p.count]) == p {
                        parts.append(String(String.UnicodeScalarView(u[(i + p.count)..<end])))
                        end = i
                        splits += 1
                        i -= p.count
                    } else {
                        i -= 1
                    }
                }
                parts.append(String(String.UnicodeScalarView(u[0..<end])))
                return parts.reversed()
            }
            var start = 0
            var i = 0
            var splits = 0
            while i + p.count <= u.count && (maxSplit < 0 || splits < maxSplit) {
                if Array(u[i..<i + p.count]) == p {
                    parts.append(String(String.UnicodeScalarView(u[start..<i])))
                    i += p.count
                    start = i
                    splits += 1
                } else {
                    i += 1
                }
            }
            parts.append(String(String.UnicodeScalarView(u[start...])))
            return parts
        }
        var i = 0
        var splits = 0
        while i < u.count {
            while i < u.count && isSpace(u[i]) { i += 1 }
            if i >= u.count { break }
            if maxSplit >= 0 && splits >= maxSplit {
                var end = u.count
                while end > i && isSpace(u[end - 1]) { end -= 1 }
                parts.append(String(String.UnicodeScalarView(u[i..<end])))
                break
            }
            let start = i
            while i < u.count && !isSpace(u[i]) { i += 1 }
            parts.append(String(String.UnicodeScalarView(u[start..<i])))
            splits += 1
        }
        return parts
    }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
        if old.isEmpty {
            // Python inserts `new` between every code point (and at both ends).
            var out = new
            var n = 1
            for u in s.unicodeScalars {
                out.unicodeScalars.append(u)
                if count < 0 || n < count { out += new; n += 1 }
            }
            return out
        }
        let parts = split(s, sep: old, maxSplit: count)
        return parts.joined(separator: new)
    }

    static func find(_ s: String, _ sub: String, fromRight: Bool) -> Int {
        let u = Array(s.unicodeScalars), p = Array(sub.unicodeScalars)
        guard p.count <= u.count else { return -1 }
        let range = Array(0...(u.count - p.count))
        for i in (fromRight ? range.reversed() : range) where Array(u[i..<i + p.count]) == p { return i }
        return -1
    }

    static func capitalize(_ s: String) -> String {
        guard let f = s.unicodeScalars.first else { return s }
        return String(f).uppercased() + String(String.UnicodeScalarView(s.unicodeScalars.dropFirst())).lowercased()
    }

    /// Python str.title(): a cased letter after an uncased character starts a word.
    static func pythonTitle(_ s: String) -> String {
        var out = ""
        var prevCased = false
        for u in s.unicodeScalars {
            let c = String(u)
            out += prevCased ? c.lowercased() : c.uppercased()
            prevCased = u.properties.isCased
        }
        return out
    }

    /// jinja2's `title` filter: capitalise each chunk after spaces, '-', and opening brackets.
    static func jinjaTitle(_ s: String) -> String {
        var out = ""
        var atStart = true
        for u in s.unicodeScalars {
            let isBoundary = isSpace(u) || "-({[<".unicodeScalars.contains(u)
            if isBoundary {
                out.unicodeScalars.append(u)
                atStart = true
            } else {
                out += atStart ? String(u).uppercased() : String(u).lowercased()
                atStart = false
            }
        }
        return out
    }

    /// jinja2's `indent` filter (3.x): indents all lines but the first unless `first`.
    static func indent(_ s: String, width: String, first: Bool, blank: Bool) -> String {
        let lines = splitLines(s + "\n")
        var rv: String
        if blank {
            rv = lines.joined(separator: "\n" + width)
        } else {
            rv = lines.first ?? ""
            let rest = lines.dropFirst()
            if !rest.isEmpty {
                rv += "\n" + rest.map { $0.isEmpty ? $0 : width + $0 }.joined(separator: "\n")
            }
        }
        if first { rv = width + rv }
        return rv
    }

    /// Python str.splitlines() (without keepends) for the common line breaks.
    static func splitLines(_ s: String) -> [String] {
        var out: [String] = []
        var cur = String.UnicodeScalarView()
        var it = Array(s.unicodeScalars)[...]
        while let u = it.popFirst() {
            switch u.value {
            case 0x0D:
                if it.first == "\n" { it.removeFirst() }
                out.append(String(cur)); cur = .init()
            case 0x0A, 0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                out.append(String(cur)); cur = .init()
            default:
                cur.append(u)
            }
        }
        if !cur.isEmpty { out.append(String(cur)) }
        return out
    }

    static func htmlEscape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

extension String {
    func trimmingWhitespace() -> String { Strings.strip(self, chars: nil, left: true, right: true) }
}
