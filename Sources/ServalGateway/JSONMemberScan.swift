/// Finds the values of chosen top-level members of a JSON object without building the rest
/// of it: the routing text of a request is one member (`prompt`, `text`, `messages`, ...) of a
/// body whose other members (sampling parameters, tools, ...) the router never reads. The scan
/// checks the object's structure (strings closed, brackets matched, `:` and `,` in place,
/// nothing after the object) and skips values by their shape; the members it returns are then
/// parsed for real by the caller.
enum JSONMemberScan {
    enum Outcome: Equatable {
        /// Byte ranges of the wanted members' values, by the index of their key in `keys`
        /// (nil: absent; the last one when a key repeats, as `JSONObject` keeps).
        case members([Range<Int>?])
        /// Not an object this scan reads (not an object at the top, or a key with escapes):
        /// the caller parses the whole body instead.
        case unsupported
        /// Not JSON.
        case invalid
    }

    static func scan(_ p: UnsafeBufferPointer<UInt8>, keys: [StaticString]) -> Outcome {
        var s = Scanner(p: p)
        var found = [Range<Int>?](repeating: nil, count: keys.count)
        s.space()
        guard s.i < p.count, p[s.i] == UInt8(ascii: "{") else { return .unsupported }
        s.i += 1
        s.space()
        if s.i < p.count && p[s.i] == UInt8(ascii: "}") {
            s.i += 1
        } else {
            while true {
                guard s.i < p.count, p[s.i] == UInt8(ascii: "\"") else { return .invalid }
                guard let (key, escaped) = s.string() else { return .invalid }
                if escaped { return .unsupported }
                s.space()
                guard s.i < p.count, p[s.i] == UInt8(ascii: ":") else { return .invalid }
                s.i += 1
                s.space()
                let start = s.i
                guard s.skipValue(depth: 1) else { return .invalid }
                for (k, want) in keys.enumerated() where equal(p, key, want) { found[k] = start..<s.i }
                s.space()
                guard s.i < p.count else { return .invalid }
                if p[s.i] == UInt8(ascii: ",") {
                    s.i += 1
                    s.space()
                    continue
                }
                guard p[s.i] == UInt8(ascii: "}") else { return .invalid }
                s.i += 1
                break
            }
        }
        s.space()
        return s.i == p.count ? .members(found) : .invalid
    }

    private static func equal(_ p: UnsafeBufferPointer<UInt8>, _ r: Range<Int>, _ key: StaticString) -> Bool {
        guard r.count == key.utf8CodeUnitCount else { return false }
        let k = key.utf8Start
        for (n, i) in r.enumerated() where p[i] != k[n] { return false }
        return true
    }

    private struct Scanner {
        let p: UnsafeBufferPointer<UInt8>
        var i = 0

        /// The deepest nesting skipped (JSONParser's own limit is higher; deeper bodies are refused).
        static let maxDepth = 512

        mutating func space() {
            while i < p.count {
                switch p[i] {
                case 0x20, 0x09, 0x0A, 0x0D: i += 1
                default: return
                }
            }
        }

        /// At a `"`: the range of the string's contents and whether it has escapes; past its
        /// closing quote after. nil when it is not closed or holds a raw control character.
        mutating func string() -> (Range<Int>, Bool)? {
            i += 1
            let start = i
            var escaped = false
            while i < p.count {
                let c = p[i]
                if c == UInt8(ascii: "\"") {
                    i += 1
                    return (start..<(i - 1), escaped)
                }
                if c == UInt8(ascii: "\\") {
                    escaped = true
                    i += 2
                    continue
                }
                if c < 0x20 { return nil }
                i += 1
            }
            return nil
        }

        mutating func skipValue(depth: Int) -> Bool {
            guard i < p.count, depth <= Self.maxDepth else { return false }
            switch p[i] {
            case UInt8(ascii: "\""):
                return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let close = p[i] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                let object = close == UInt8(ascii: "}")
                i += 1
                space()
                if i < p.count && p[i] == close {
                    i += 1
                    return true
                }
                while true {
                    if object {
                        guard i < p.count, p[i] == UInt8(ascii: "\""), string() != nil else { return false }
                        space()
                        guard i < p.count, p[i] == UInt8(ascii: ":") else { return false }
                        i += 1
                        space()
                    }
                    guard skipValue(depth: depth + 1) else { return false }
                    space()
                    guard i < p.count else { return false }
                    if p[i] == UInt8(ascii: ",") {
                        i += 1
                        space()
                        continue
                    }
                    guard p[i] == close else { return false }
                    i += 1
                    return true
                }
            default:
                // A number or a literal: the run of their characters, checked loosely.
                let start = i
                while i < p.count {
                    switch p[i] {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
                        UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "E"):
                        i += 1
                    default:
                        return literalOK(start..<i)
                    }
                }
                return literalOK(start..<i)
            }
        }

        /// `true`, `false`, `null`, or something that starts like a number.
        private func literalOK(_ r: Range<Int>) -> Bool {
            guard let first = r.first.map({ p[$0] }) else { return false }
            if first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) {
                return r.allSatisfy { p[$0] < UInt8(ascii: "a") || p[$0] == UInt8(ascii: "e") }
            }
            return JSONMemberScan.equal(p, r, "true") || JSONMemberScan.equal(p, r, "false")
                || JSONMemberScan.equal(p, r, "null")
        }
    }
}
