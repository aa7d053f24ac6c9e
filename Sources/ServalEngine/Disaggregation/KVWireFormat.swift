import Foundation

/// The TCP transfer's messages. The decode server opens the connection and says which room
/// it wants and what its pool stores (`Hello`); the prefill server answers with frames of
/// four little-endian 64-bit words (kind, a, b, payload bytes) and the payload: pages
/// (a = first position, b = count, payload = slot bytes), done (a = first token), or an
/// error (payload = UTF-8 message).
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

        func encoded() -> (words: [UInt64], tail: [UInt8]) {
            let sig = Array(signature.utf8)
            return (
                [
                    magic, room, UInt64(skip), UInt64(promptLength), UInt64(slotByteCount), UInt64(sig.count),
                ], sig
            )
        }

        static func read(from c: TCPConnection, deadline: Date) throws -> Hello {
            let w = try c.readWords(6, deadline: deadline, what: "the KV transfer hello")
            guard w[0] == magic else { throw KVTransferError("not a Serval KV transfer client (bad magic)") }
            guard w[5] <= 4096, w[2] <= w[3], w[3] < 1 << 32, w[4] < 1 << 32 else {
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
                signature: String(decoding: sig, as: UTF8.self))
        }
    }

    static func writeFrame(_ c: TCPConnection, _ kind: Kind, _ a: UInt64, _ b: UInt64, _ payload: [UInt8]) throws {
        try c.writeWords([kind.rawValue, a, b, UInt64(payload.count)])
        try c.write(payload)
    }
}
