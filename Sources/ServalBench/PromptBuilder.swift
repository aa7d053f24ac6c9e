import ServalBase

/// Builds prompts whose length in tokens is exact for the target tokenizer.
///
/// Random ids rarely survive decode → encode unchanged (byte-level pieces
/// merge, split, or form invalid UTF-8), so we iterate to a fixed point:
/// decode, re-encode, then cut or top up with fresh random ids until the
/// text re-encodes to exactly the requested number of tokens.
public struct PromptBuilder {
    public let tokenizer: any BenchTokenizer
    private let pool: [Int32]

    public init(tokenizer: any BenchTokenizer) throws {
        self.tokenizer = tokenizer
        var pool: [Int32] = []
        pool.reserveCapacity(tokenizer.vocabSize)
        for id in 0..<Int32(clamping: tokenizer.vocabSize) where !tokenizer.isSpecial(id) {
            pool.append(id)
        }
        guard !pool.isEmpty else {
            throw BenchError("the tokenizer has no ordinary tokens to build random prompts from")
        }
        self.pool = pool
    }

    public func randomIDs(_ n: Int, rng: inout SeededGenerator) -> [Int32] {
        (0..<max(n, 0)).map { _ in pool[Int(rng.next() % UInt64(pool.count))] }
    }

    /// Ids and text with `encode(text) == ids` and `ids.count == length`.
    public func exactPrompt(length: Int, rng: inout SeededGenerator) throws -> (ids: [Int32], text: String) {
        guard length > 0 else { return ([], "") }
        var ids = randomIDs(length, rng: &rng)
        for _ in 0..<64 {
            let text = try tokenizer.decode(ids)
            let again = try tokenizer.encode(text)
            if again.count == length {
                if again == ids { return (ids, text) }
                ids = again
                continue
            }
            if again.count > length {
                ids = Array(again.prefix(length))
            } else {
                ids = again + randomIDs(length - again.count, rng: &rng)
            }
        }
        throw BenchError("could not build a prompt of exactly \(length) tokens after 64 rounds of decode/encode")
    }

    /// `prefix` followed by a fresh random part of `length` tokens, such that
    /// the whole text re-encodes to exactly prefix + part. The shared prefix
    /// stays token-identical across rows, which is what a prefix cache keys on.
    public func exactContinuation(of prefix: [Int32], length: Int, rng: inout SeededGenerator) throws -> (
        ids: [Int32], text: String
    ) {
        guard length > 0 else { return (prefix, try tokenizer.decode(prefix)) }
        for _ in 0..<64 {
            let part = try exactPrompt(length: length, rng: &rng)
            let ids = prefix + part.ids
            let text = try tokenizer.decode(ids)
            if try tokenizer.encode(text) == ids { return (ids, text) }
        }
        throw BenchError("could not join a \(length)-token question to the shared prefix without the tokens merging")
    }
}
