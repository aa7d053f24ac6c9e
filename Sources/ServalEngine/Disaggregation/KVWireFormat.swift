import Foundation
import ServalTensor

/// The TCP transfer's messages. The decode server opens the connection and says which room
/// it wants and what its pool stores (`Hello`: room, positions it skips, prompt length, bytes
/// per token, its pool's signature and its tensor-parallel size); the prefill server answers with frames of
/// four little-endian 64-bit words (kind, a, b, payload bytes) and the payload: pages
/// (a = first position, b = count, payload = slot bytes), done (a = first token, b = 1 when
/// its logprobs follow as the payload), or an error (payload = UTF-8 message).
enum KVWireFormat {
    static let magic: UInt64 = 0x3152_4658_564B_5653  // "SVKVXFR1"

    enum Kind: UInt64 {
        case pages = 1
        case done = 2
        case error = 3
    }

    struct Hello: Equatable {
        var room: UInt64
        /// Positions the decode side already holds (its radix cache): not sent.
        var skip: Int
        var promptLength: Int
        var slotByteCount: Int
        var signature: String
        /// The decode server's `--tp-size` (its pool's shards): the prefill server's must match.
        var tpSize: Int = 1

        func encoded() -> (words: [UInt64], tail: [UInt8]) {
            let sig = Array(signature.utf8)
            return (
                [
                    magic, room, UInt64(skip), UInt64(promptLength), UInt64(slotByteCount), UInt64(sig.count),
                    UInt64(tpSize),
                ], sig
            )
        }

        static func read(from c: TCPConnection, deadline: Date) throws -> Hello {
            let w = try c.readWords(7, deadline: deadline, what: "the KV transfer hello")
            guard w[0] == magic else { throw KVTransferError("not a Serval KV transfer client (bad magic)") }
            guard w[5] <= 4096, w[2] <= w[3], w[3] < 1 << 32, w[4] < 1 << 32, (1...4096).contains(w[6]) else {
                throw KVTransferError("malformed KV transfer hello")
            }
            var sig = [UInt8](repeating: 0, count: Int(w[5]))
            if !sig.isEmpty {
                try sig.withUnsafeMutableBytes {
                    try c.read(
                        into: $0.baseAddress!, count: $0.count, deadline: deadline, what: "the KV transfer hello")
                }
            }
            return Hello(
                room: w[1], skip: Int(w[2]), promptLength: Int(w[3]), slotByteCount: Int(w[4]),
                signature: String(decoding: sig, as: UTF8.self), tpSize: Int(w[6]))
        }
    }

    /// A sampled token's logprobs as 32-bit words: logprob, top count, (id, logprob) pairs,
    /// requested count, (id, logprob) pairs.
    static func encode(_ lp: TokenLogprob) -> [UInt8] {
        var words: [UInt32] = [lp.logprob.bitPattern, UInt32(lp.top.count)]
        for t in lp.top { words += [UInt32(bitPattern: t.tokenID), t.logprob.bitPattern] }
        words.append(UInt32(lp.requested.count))
        for t in lp.requested { words += [UInt32(bitPattern: t.tokenID), t.logprob.bitPattern] }
        return words.map(\.littleEndian).withUnsafeBytes { Array($0) }
    }

    static func decodeLogprob(_ bytes: [UInt8]) throws -> TokenLogprob {
        guard bytes.count % 4 == 0 else { throw KVTransferError("malformed logprobs in the KV transfer") }
        var words = [UInt32](repeating: 0, count: bytes.count / 4)
        words.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }
        words = words.map { UInt32(littleEndian: $0) }
        var i = 0
        func next() throws -> UInt32 {
            guard i < words.count else { throw KVTransferError("malformed logprobs in the KV transfer") }
            i += 1
            return words[i - 1]
        }
        func pairs() throws -> [(tokenID: Int32, logprob: Float)] {
            let n = Int(try next())
            guard n <= words.count else { throw KVTransferError("malformed logprobs in the KV transfer") }
            return try (0..<n).map { _ in (Int32(bitPattern: try next()), Float(bitPattern: try next())) }
        }
        let logprob = Float(bitPattern: try next())
        let top = try pairs()
        let requested = try pairs()
        return TokenLogprob(tokenID: 0, logprob: logprob, top: top, requested: requested)
    }

    static func writeFrame(_ c: TCPConnection, _ kind: Kind, _ a: UInt64, _ b: UInt64, _ payload: [UInt8]) throws {
        try c.writeWords([kind.rawValue, a, b, UInt64(payload.count)])
        try c.write(payload)
    }
}
