import Foundation

/// Decides when a request is done and keeps stop strings out of its output.
///
/// Stop strings are looked for in the detokenized text, so one that spans
/// several tokens is still found. Text that could be the start of a stop string
/// is held back until the next tokens show whether it is one; the matched stop
/// string itself (and anything after it) is never emitted.
struct StopChecker {
    /// The request's stop strings as scalars (empty ones dropped).
    private let stops: [[Unicode.Scalar]]
    private let stopTokens: Set<Int32>
    private let maxNewTokens: Int
    private let maxTotalTokens: Int
    /// Text held back because it may begin a stop string.
    private var held: [Unicode.Scalar] = []
    /// `stop_regex` patterns, compiled, with their source text.
    private let regexes: [(pattern: String, regex: NSRegularExpression)]
    /// The output text so far, for the regexes (bounded: see `regexWindow`).
    private var recent = ""
    /// How much of the output's tail the regexes look at.
    static let regexWindow = 4096

    init(params: SamplingParams, endOfGeneration: [Int32], maxTotalTokens: Int) {
        stops = params.stop.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
        var tokens = Set(params.stopTokenIDs)
        if !params.ignoreEOS { tokens.formUnion(endOfGeneration) }
        stopTokens = tokens
        maxNewTokens = params.maxNewTokens
        self.maxTotalTokens = maxTotalTokens
        // The server compiles each pattern before submitting, so none fails here.
        regexes = params.stopRegex.compactMap { p in (try? NSRegularExpression(pattern: p)).map { (p, $0) } }
    }

    /// A stop token ends the request before its text is looked at; the token
    /// itself contributes no text.
    func isStopToken(_ token: Int32) -> Bool { stopTokens.contains(token) }

    /// After a token's text is in: has the request reached its length limit?
    func reachedLength(generated: Int, totalTokens: Int) -> Bool {
        generated >= maxNewTokens || totalTokens >= maxTotalTokens
    }

    /// Feeds newly final text. Returns the text safe to emit and the stop string if one matched
    /// (then nothing after the match may ever be emitted).
    mutating func feed(_ text: String) -> (emit: String, matched: String?) {
        let result = feedStops(text)
        guard result.matched == nil, !regexes.isEmpty, !text.isEmpty else { return result }
        recent += text
        if recent.utf16.count > 2 * Self.regexWindow { recent = String(recent.suffix(Self.regexWindow)) }
        let range = NSRange(recent.startIndex..., in: recent)
        for (pattern, regex) in regexes where regex.firstMatch(in: recent, range: range) != nil {
            // The match stays in the output: everything held back goes out with it.
            return (result.emit + flush(), pattern)
        }
        return result
    }

    private mutating func feedStops(_ text: String) -> (emit: String, matched: String?) {
        guard !stops.isEmpty else { return (text, nil) }
        held.append(contentsOf: text.unicodeScalars)
        // Earliest match of any stop string in held + new text.
        var best: (start: Int, stop: Int)? = nil
        for (s, stop) in stops.enumerated() where stop.count <= held.count {
            var i = 0
            while i + stop.count <= held.count {
                if held[i] == stop[0], Array(held[i..<i + stop.count]) == stop {
                    if best.map({ i < $0.start }) ?? true { best = (i, s) }
                    break
                }
                i += 1
            }
        }
        if let best {
            let out = String(String.UnicodeScalarView(held[..<best.start]))
            held.removeAll()
            var matched = String.UnicodeScalarView()
            matched.append(contentsOf: stops[best.stop])
            return (out, String(matched))
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        var hold = 0
        for stop in stops {
            var k = min(stop.count - 1, held.count)
            while k > hold {
                if held[(held.count - k)...].elementsEqual(stop[..<k]) {
                    hold = k
                    break
                }
                k -= 1
            }
        }
        let out = String(String.UnicodeScalarView(held[..<(held.count - hold)]))
        held.removeFirst(held.count - hold)
        return (out, nil)
    }

    /// The request ended for another reason: the held-back text was not a stop string after all.
    mutating func flush() -> String {
        let out = String(String.UnicodeScalarView(held))
        held.removeAll()
        return out
    }
}
