import Testing
import ServalTensor
@testable import ServalFormats

/// SplitMix64: a small seeded generator so every fuzz run is reproducible from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Seeded random damage to GGUF files: whatever the bytes, opening either succeeds with a
/// directory that stays inside the file, or throws a clean FormatError naming the file.
struct GGUFFuzzTests {
    /// Bytes that tend to hit edge cases when written over a count, length, type or offset.
    static let interesting: [UInt8] = [
        0x00, 0x01, 0x02, 0x07, 0x08, 0x09, 0x0C, 0x0D, 0x1F, 0x20, 0x7F, 0x80, 0xFE, 0xFF,
    ]

    /// Opens `path` and checks the outcome; returns whether it opened.
    @discardableResult
    static func check(_ path: String, size: Int, _ what: @autoclosure () -> String) -> Bool {
        do {
            let g = try GGUFFile(path: path)
            for t in g.tensors {
                let inside = t.offset >= g.dataOffset && t.byteCount <= size - t.offset
                #expect(inside, "\(what()): \(t.name) [\(t.offset), +\(t.byteCount)) outside \(size) bytes")
                #expect(t.type.byteCount(elements: t.elementCount) == t.byteCount, "\(what()): \(t.name)")
                if inside && t.byteCount > 0 {
                    _ = g.data(of: t).load(fromByteOffset: t.byteCount - 1, as: UInt8.self)
                }
            }
            return true
        } catch {
            #expect(isCleanError(error, file: path), "\(what()): \(error)")
            return false
        }
    }

    /// Random byte edits, truncations, insertions and deletions of a small file holding every
    /// value type, nested arrays and several tensor types.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func randomDamageToASmallFile(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .string("llama"))] + GGUFRoundTripTests.allTypes
        b.tensors = GGUFRoundTripTests.tensors()
        let built = b.build()
        let good = built.bytes
        let dir = try TempDir()
        var opened = 0, refused = 0
        for iteration in 0..<600 {
            var bytes = good
            let region = Int.random(in: 0..<10, using: &rng) < 8 ? built.dataOffset : bytes.count
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<6:  // overwrite 1-4 bytes
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let at = Int.random(in: 0..<region, using: &rng)
                    bytes[at] =
                        Bool.random(using: &rng)
                        ? Self.interesting.randomElement(using: &rng) ?? 0 : UInt8.random(in: 0...255, using: &rng)
                }
            case 6, 7:  // truncate
                bytes.removeLast(Int.random(in: 1..<bytes.count, using: &rng))
            case 8:  // insert bytes
                let at = Int.random(in: 0..<region, using: &rng)
                bytes.insert(
                    contentsOf: (0..<Int.random(in: 1...9, using: &rng)).map { _ in
                        UInt8.random(in: 0...255, using: &rng)
                    }, at: at)
            default:  // delete bytes
                let at = Int.random(in: 0..<region, using: &rng)
                bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...9, using: &rng)))
            }
            guard !bytes.isEmpty else { continue }
            let path = try dir.write("fuzz.gguf", bytes)
            if Self.check(path, size: bytes.count, "seed \(seed) iteration \(iteration)") {
                opened += 1
            } else {
                refused += 1
            }
        }
        // The damage is real: most variants are refused, and some (e.g. edits inside string
        // values or tensor data) still open.
        #expect(refused > 300)
        #expect(opened > 0)
    }

    /// Random byte edits in the real model's header (each restored before the next).
    @Test(.enabled(if: DefaultModel.isAvailable), arguments: [UInt64(7)])
    func randomDamageToTheDefaultModel(seed: UInt64) throws {
        let g = try GGUFFile(path: DefaultModel.path)
        let size = try FileHandleSize.of(DefaultModel.path)
        let header = try DefaultModel.prefix(g.dataOffset)
        let layout = GGUFLayout(header)
        let dir = try TempDir()
        let file = try PatchableFile(path: dir.file("fuzz.gguf"), bytes: header, size: size)
        var rng = SplitMix64(seed: seed)
        // Aim at the fields that steer parsing: fixed header, each metadata entry's length and
        // type fields, the directory; plus anywhere in the header.
        var targets = Array(0..<24)
        for kv in layout.kvs { targets += Array(kv.keyLength..<kv.keyLength + 8) + Array(kv.type..<kv.type + 4) }
        for t in layout.tensors { targets += Array(t.nameLength..<t.nameLength + 8) + Array(t.nDims..<t.type + 12) }
        var refused = 0
        for iteration in 0..<60 {
            let at =
                Bool.random(using: &rng)
                ? (targets.randomElement(using: &rng) ?? 0) : Int.random(in: 0..<header.count, using: &rng)
            let value =
                Bool.random(using: &rng)
                ? Self.interesting.randomElement(using: &rng) ?? 0 : UInt8.random(in: 0...255, using: &rng)
            try file.patch(at: at, [value])
            if !Self.check(file.path, size: size, "seed \(seed) iteration \(iteration): byte \(at) = \(value)") {
                refused += 1
            }
            try file.patch(at: at, header[at..<at + 1])
        }
        #expect(refused > 0)
    }
}

/// Whether `error` is a FormatError that is clean for `path` (see `isCleanError(_:file:)`).
func isCleanError(_ error: Error, file path: String) -> Bool {
    guard let e = error as? FormatError else { return false }
    return isCleanError(e, file: path)
}
