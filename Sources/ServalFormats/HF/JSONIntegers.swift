#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Integer decoding that keeps the key in its error.
///
/// Foundation's JSONDecoder fails on a number that is not an integer (e.g. `1.5` where an `Int`
/// is expected) with an internal error that reaches the caller as `dataCorrupted` with an empty
/// coding path, so the user would not learn which key was wrong. These helpers catch any
/// non-`DecodingError` at the key and rethrow it as a type mismatch there.
extension KeyedDecodingContainer {
    func decodeIntIfPresent(forKey key: Key) throws -> Int? {
        do {
            return try decodeIfPresent(Int.self, forKey: key)
        } catch  where !(error is DecodingError) {
            throw notAnInteger(codingPath + [key])
        }
    }

    func decodeIntsIfPresent(forKey key: Key) throws -> [Int]? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        var items = try nestedUnkeyedContainer(forKey: key)
        var out: [Int] = []
        while !items.isAtEnd {
            let index = items.currentIndex
            do {
                out.append(try items.decode(Int.self))
            } catch  where !(error is DecodingError) {
                throw notAnInteger(codingPath + [key, AnyCodingKey(intValue: index)])
            }
        }
        return out
    }
}

private func notAnInteger(_ path: [CodingKey]) -> DecodingError {
    .typeMismatch(Int.self, .init(codingPath: path, debugDescription: "expected an integer"))
}
