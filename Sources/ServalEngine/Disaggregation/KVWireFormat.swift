import Foundation
import ServalTensor

/// The TCP transfer's messages. The decode server opens the connection and says which room
/// it wants and what its pool stores (`Hello`: room, positions it skips, prompt length, bytes
/// per token, its pool's signature, its tensor-parallel size, and how pages move: this socket
/// or a device peer link, with its server id and the link generation it holds); the prefill
/// server answers with frames of four little-endian 64-bit words (kind, a, b, payload bytes)
/// and the payload: pages (a = first position, b = count, payload = slot bytes), done
/// (a = first token, b = 1 when its logprobs follow as the payload), or an error (payload =
/// UTF-8 message). Over a peer link the first frame is `link` (a = generation; b = 1 when the
/// decode server must join a new link whose id is the payload, 0 when its link stays), and
/// pages come as `devicePages` (a = first position, b = count, payload = the link's sequence
/// number, 8 bytes): the slot bytes follow on the link in that order. A decode server that no
/// longer wants a room's pages writes `cancelWord` (it still receives pages already announced).
enum KVWireFormat {
    static let magic: UInt64 = 0x3152_4658_564B_5653  // "SVKVXFR1"

    /// What a decode server writes after its hello when it stops wanting the room.
    static let cancelWord: UInt64 = 0x4C45_434E_4143_5653  // "SVCANCEL"

    enum Kind: UInt64 {
        case pages = 1
        case done = 2
        case error = 3
        case link = 4
        case devicePages = 5
    }

    /// How a pair moves its page bytes: in the frames, or over a device peer link.
    enum PagePath: UInt64, Equatable {
        case socket = 0
        case peerLink = 1
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
        var pagePath: PagePath = .socket
        /// The decode server's id (random per process): the prefill server keeps one link per id.
        var serverID: UInt64 = 0
        /// The link generation the decode server holds with this prefill server (0: none).
        var linkGeneration: UInt64 = 0

        func encoded() -> (words: [UInt64], tail: [UInt8]) {
            let sig = Array(signature.utf8)
            return (
                [
                    magic, room, UInt64(skip), UInt64(promptLength), UInt64(slotByteCount), UInt64(sig.count),
                    UInt64(tpSize), pagePath.rawValue, serverID, linkGeneration,
                ], sig
            )
        }

        static func read(from c: TCPConnection, deadline: Date) throws -> Hello {
            let w = try c.readWords(10, deadline: deadline, what: "the KV transfer hello")
            guard w[0] == magic else { throw KVTransferError("not a Serval KV transfer client (bad magic)") }
            guard w[5] <= 4096, w[2] <= w[3], w[3] < 1 << 32, w[4] < 1 << 32, (1...4096).contains(w[6]),
                let path = PagePath(rawValue: w[7])
            else {
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
                signature: String(decoding: sig, as: UTF8.self), tpSize: Int(w[6]), pagePath: path,
                serverID: w[8], linkGeneration: w[9])
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

    /// A `devicePages` frame's payload: the link sequence number.
    static func encodeSequence(_ seq: UInt64) -> [UInt8] {
        withUnsafeBytes(of: seq.littleEndian) { Array($0) }
    }

    static func decodeSequence(_ payload: [UInt8]) throws -> UInt64 {
        guard payload.count == 8 else { throw KVTransferError("malformed device pages frame") }
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: payload) }
        return UInt64(littleEndian: v)
    }

    static func writeFrame(_ c: TCPConnection, _ kind: Kind, _ a: UInt64, _ b: UInt64, _ payload: [UInt8]) throws {
        try c.writeWords([kind.rawValue, a, b, UInt64(payload.count)])
        try c.write(payload)
    }
}
