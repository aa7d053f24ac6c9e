/// Turns template source into tokens, applying Jinja's whitespace rules as HF configures them
/// (`trim_blocks=True`, `lstrip_blocks=True`, `keep_trailing_newline=False`) so the parser only
/// ever sees the text that will be emitted.
struct Token: Sendable {
    enum Kind: Sendable, Equatable {
        case text(String)
        case varBegin, varEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case int(Int)
        case float(Double)
        case op(String)
        case eof
    }
    let kind: Kind
    let line: Int
}

struct Lexer {
    private let src: [UInt8]
    private var pos = 0
    private var line = 1
    private var tokens: [Token] = []

    init(source: String) {
        // Jinja normalises every newline sequence to "\n" and drops one trailing newline.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(source.utf8.count)
        var it = Array(source.utf8)[...]
        while let b = it.popFirst() {
            if b == 13 {
                if it.first == 10 { it.removeFirst() }
                bytes.append(10)
            } else {
                bytes.append(b)
            }
        }
        if bytes.last == 10 { bytes.removeLast() }
        src = bytes
    }

    static func tokenize(_ source: String) throws -> [Token] {
        var lexer = Lexer(source: source)
        try lexer.run()
        return lexer.tokens
    }

    private static func isSpace(_ b: UInt8) -> Bool {
        b == 32 || b == 9 || b == 10 || b == 13 || b == 11 || b == 12
    }

    private func text(_ range: Range<Int>) -> String {
        String(decoding: src[range], as: UTF8.self)
    }

    private mutating func advance(to newPos: Int) {
        while pos < newPos {
            if src[pos] == 10 { line += 1 }
            pos += 1
        }
    }

    private func findTagStart(from start: Int) -> Int? {
        var i = start
        while i + 1 < src.count {
            if src[i] == UInt8(ascii: "{") {
                let n = src[i + 1]
                if n == UInt8(ascii: "{") || n == UInt8(ascii: "%") || n == UInt8(ascii: "#") { return i }
            }
            i += 1
        }
        return nil
    }

    private mutating func run() throws {
        var lineStarting = true
        while pos < src.count {
            guard let tagStart = findTagStart(from: pos) else {
                tokens.append(Token(kind: .text(text(pos..<src.count)), line: line))
                advance(to: src.count)
                break
            }
            let kind = src[tagStart + 1]
            let sign: UInt8 = tagStart + 2 < src.count ? src[tagStart + 2] : 0
            var dataEnd = tagStart
            if sign == UInt8(ascii: "-") {
                while dataEnd > pos && Lexer.isSpace(src[dataEnd - 1]) { dataEnd -= 1 }
            } else if sign != UInt8(ascii: "+") && kind != UInt8(ascii: "{") {
                // lstrip_blocks: drop spaces/tabs between the line start and a block or comment tag.
                var lineStart = dataEnd
                while lineStart > pos && src[lineStart - 1] != 10 { lineStart -= 1 }
                let atLineStart = lineStart > pos || lineStarting || (lineStart == pos && pos > 0 && src[pos - 1] == 10)
                if atLineStart && src[lineStart..<dataEnd].allSatisfy({ Lexer.isSpace($0) }) {
                    dataEnd = lineStart
                }
            }
            if dataEnd > pos {
                tokens.append(Token(kind: .text(text(pos..<dataEnd)), line: line))
            }
            advance(to: tagStart)
            let hasSign = sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+")
            let bodyStart = tagStart + 2 + (hasSign ? 1 : 0)
            if kind == UInt8(ascii: "#") {
                try lexComment(bodyStart: bodyStart)
            } else {
                let isBlock = kind == UInt8(ascii: "%")
                tokens.append(Token(kind: isBlock ? .blockBegin : .varBegin, line: line))
                advance(to: bodyStart)
                try lexTagBody(isBlock: isBlock)
            }
            lineStarting = pos > 0 && src[pos - 1] == 10
        }
        tokens.append(Token(kind: .eof, line: line))
    }

    private mutating func lexComment(bodyStart: Int) throws {
        let startLine = line
        var i = bodyStart
        while i + 1 < src.count && !(src[i] == UInt8(ascii: "#") && src[i + 1] == UInt8(ascii: "}")) { i += 1 }
        guard i + 1 < src.count else { throw TemplateError("unclosed comment '{#' opened at line \(startLine)") }
        let minus = i > bodyStart && src[i - 1] == UInt8(ascii: "-")
        let plus = i > bodyStart && src[i - 1] == UInt8(ascii: "+")
        var end = i + 2
        end = trailingStrip(from: end, minus: minus, plus: plus, trimBlocks: true)
        advance(to: end)
    }

    /// Whitespace consumed after a tag: `-` strips all of it, trim_blocks one newline.
    private func trailingStrip(from start: Int, minus: Bool, plus: Bool, trimBlocks: Bool) -> Int {
        var end = start
        if minus {
            while end < src.count && Lexer.isSpace(src[end]) { end += 1 }
        } else if trimBlocks && !plus && end < src.count && src[end] == 10 {
            end += 1
        }
        return end
    }

    private func startsWith(_ s: String, at i: Int) -> Bool {
        var j = i
        for b in s.utf8 {
            guard j < src.count, src[j] == b else { return false }
            j += 1
        }
        return true
    }

    private mutating func lexTagBody(isBlock: Bool) throws {
        let close = isBlock ? "%}" : "}}"
        let startLine = line
        var open: [String] = []
        while true {
            while pos < src.count && Lexer.isSpace(src[pos]) { advance(to: pos + 1) }
            guard pos < src.count else {
                let bracket = open.last.map { " (unbalanced '\($0)')" } ?? ""
                throw TemplateError("unclosed '\(isBlock ? "{%" : "{{")' opened at line \(startLine)\(bracket)")
            }
            if open.isEmpty {
                var end: Int?
                var minus = false, plus = false
                if startsWith("-" + close, at: pos) {
                    end = pos + 3; minus = true
                } else if isBlock && startsWith("+" + close, at: pos) {
                    end = pos + 3; plus = true
                } else if startsWith(close, at: pos) {
                    end = pos + 2
                }
                if let e = end {
                    tokens.append(Token(kind: isBlock ? .blockEnd : .varEnd, line: line))
                    advance(to: trailingStrip(from: e, minus: minus, plus: plus, trimBlocks: isBlock))
                    return
                }
            }
            let c = src[pos]
            if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
                try lexString(quote: c)
            } else if isDigit(c) {
                lexNumber()
            } else if isNameStart(c) {
                var j = pos
                while j < src.count && (isNameStart(src[j]) || isDigit(src[j])) { j += 1 }
                tokens.append(Token(kind: .name(text(pos..<j)), line: line))
                advance(to: j)
            } else {
                let two = pos + 1 < src.count ? text(pos..<pos + 2) : ""
                let op: String
                if ["//", "**", "==", "!=", "<=", ">="].contains(two) {
                    op = two
                } else if "+-*/%~<>=()[]{},.:|;".utf8.contains(c) {
                    op = String(UnicodeScalar(c))
                } else {
                    throw TemplateError("unexpected character '\(text(pos..<pos + 1))' at line \(line)")
                }
                if op == "(" || op == "[" || op == "{" { open.append(op) }
                if op == ")" || op == "]" || op == "}" {
                    let expected = ["(": ")", "[": "]", "{": "}"][open.last ?? ""]
                    guard expected == op else {
                        throw TemplateError(
                            "unexpected '\(op)' at line \(line)" + (expected.map { ", expected '\($0)'" } ?? ""))
                    }
                    open.removeLast()
                }
                tokens.append(Token(kind: .op(op), line: line))
                advance(to: pos + op.utf8.count)
            }
        }
    }

    private func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
    private func isNameStart(_ c: UInt8) -> Bool {
        (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95
    }

    private mutating func lexNumber() {
        var j = pos
        var isFloat = false
        while j < src.count && (isDigit(src[j]) || src[j] == 95) { j += 1 }
        if j + 1 < src.count && src[j] == UInt8(ascii: ".") && isDigit(src[j + 1]) {
            isFloat = true
            j += 1
            while j < src.count && (isDigit(src[j]) || src[j] == 95) { j += 1 }
        }
        if j < src.count && (src[j] == UInt8(ascii: "e") || src[j] == UInt8(ascii: "E")) {
            var k = j + 1
            if k < src.count && (src[k] == UInt8(ascii: "+") || src[k] == UInt8(ascii: "-")) { k += 1 }
            if k < src.count && isDigit(src[k]) {
                isFloat = true
                j = k
                while j < src.count && isDigit(src[j]) { j += 1 }
            }
        }
        let literal = String(text(pos..<j).filter { $0 != "_" })
        if !isFloat, let v = Int(literal) {
            tokens.append(Token(kind: .int(v), line: line))
        } else {
            tokens.append(Token(kind: .float(Double(literal) ?? .infinity), line: line))
        }
        advance(to: j)
    }

    /// Python-style string literal: backslash escapes; unknown escapes keep the backslash.
    private mutating func lexString(quote: UInt8) throws {
        let startLine = line
        var j = pos + 1
        var out: [UInt8] = []
        while true {
            guard j < src.count else { throw TemplateError("unterminated string literal at line \(startLine)") }
            let c = src[j]
            if c == quote { j += 1; break }
            if c == UInt8(ascii: "\\") && j + 1 < src.count {
                let e = src[j + 1]
                j += 2
                switch e {
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "0"): out.append(0)
                case UInt8(ascii: "a"): out.append(7)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "v"): out.append(11)
                case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(e)
                case 10: break
                case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let width = e == UInt8(ascii: "x") ? 2 : (e == UInt8(ascii: "u") ? 4 : 8)
                    guard j + width <= src.count, let code = UInt32(text(j..<j + width), radix: 16),
                        let scalar = UnicodeScalar(code)
                    else {
                        throw TemplateError("invalid \\\(UnicodeScalar(e)) escape in string literal at line \(line)")
                    }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                    j += width
                default:
                    out.append(UInt8(ascii: "\\"))
                    out.append(e)
                }
            } else {
                out.append(c)
                j += 1
            }
        }
        tokens.append(Token(kind: .string(String(decoding: out, as: UTF8.self)), line: line))
        advance(to: j)
    }
}
