/// Small, independent edits to one row of logits before a token is chosen.
/// Each one reads only its own settings and the request's generated tokens, so
/// the order of requests in a batch never changes what a request samples.
protocol LogitProcessor {
    /// True when applying it would change nothing (skipped on the hot path).
    var isIdentity: Bool { get }
    func apply(to logits: UnsafeMutableBufferPointer<Float>)
}

/// OpenAI's `logit_bias`: a constant added to chosen tokens' logits.
struct LogitBias: LogitProcessor {
    var bias: [Int32: Float]
    var isIdentity: Bool { bias.isEmpty }
    func apply(to logits: UnsafeMutableBufferPointer<Float>) {
        for (token, b) in bias where token >= 0 && Int(token) < logits.count {
            logits[Int(token)] += b
        }
    }
}

/// Frequency, presence (OpenAI: subtract `f·count` and `p·[count>0]`) and
/// repetition (CTRL/HF: divide positive logits, multiply negative ones by `r`)
/// penalties, all over the tokens generated so far.
struct Penalties: LogitProcessor {
    var frequency: Float
    var presence: Float
    var repetition: Float
    /// How often each token has been generated so far.
    var generated: [Int32: Int]

    var isIdentity: Bool {
        generated.isEmpty || (frequency == 0 && presence == 0 && repetition == 1)
    }

    func apply(to logits: UnsafeMutableBufferPointer<Float>) {
        for (token, count) in generated where token >= 0 && Int(token) < logits.count {
            var l = logits[Int(token)]
            if repetition != 1 { l = l > 0 ? l / repetition : l * repetition }
            l -= frequency * Float(count) + presence
            logits[Int(token)] = l
        }
    }
}

/// `min_new_tokens`: until enough tokens are out, EOS and stop tokens cannot be chosen.
struct SuppressTokens: LogitProcessor {
    var tokens: [Int32]
    var isIdentity: Bool { tokens.isEmpty }
    func apply(to logits: UnsafeMutableBufferPointer<Float>) {
        for token in tokens where token >= 0 && Int(token) < logits.count {
            logits[Int(token)] = -.infinity
        }
    }
}

/// A grammar's token mask (structured outputs): every token whose bit is clear gets -∞.
struct AllowedTokens: LogitProcessor {
    var words: [UInt64]
    var isIdentity: Bool { false }
    func apply(to logits: UnsafeMutableBufferPointer<Float>) {
        let n = logits.count
        words.withUnsafeBufferPointer { w in
            var base = 0
            for word in w {
                guard base < n else { break }
                let end = min(base + 64, n)
                if word == 0 {
                    for i in base..<end { logits[i] = -.infinity }
                } else if word != ~0 {
                    for i in base..<end where word & (1 << UInt64(i - base)) == 0 { logits[i] = -.infinity }
                }
                base += 64
            }
            for i in min(base, n)..<n { logits[i] = -.infinity }
        }
    }
}
