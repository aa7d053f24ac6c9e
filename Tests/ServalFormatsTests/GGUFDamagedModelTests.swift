import Testing
import ServalTensor
@testable import ServalFormats

/// The issue's requirement: the real default model, truncated at many offsets and with bytes
/// corrupted in every kind of header field, always gives a FormatError whose one-line message
/// names the file — never a crash, a hang or a huge allocation.
///
/// The model is ~98 MB but the reader only reads the header (~1.8 MB), so damaged copies are
/// written as the header bytes followed by a hole up to the intended size (see
/// `PatchableFile`), truncated or patched in place rather than rewritten for each case.
@Suite(.enabled(if: DefaultModel.isAvailable))
struct GGUFDamagedModelTests {
    /// The model's header bytes, its layout, and facts about the intact file.
    struct Original {
        let header: [UInt8]
        let layout: GGUFLayout
        let fileSize: Int
        let dataOffset: Int
        let tensors: [GGUFTensorInfo]

        init() throws {
            let g = try GGUFFile(path: DefaultModel.path)
            fileSize = try FileHandleSize.of(DefaultModel.path)
            dataOffset = g.dataOffset
            tensors = g.tensors
            header = try DefaultModel.prefix(g.dataOffset)
            layout = GGUFLayout(header)
        }
    }

    /// Opens `path`, expecting a clean FormatError; returns it (nil after recording an issue).
    @discardableResult
    func expectCleanError(
        _ path: String, _ what: String, item: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> FormatError? {
        let (e, other) = formatError { try GGUFFile(path: path) }
        #expect(other == nil, "\(what): non-FormatError \(String(describing: other))", sourceLocation: sourceLocation)
        guard let e else {
            Issue.record("\(what): opened without an error", sourceLocation: sourceLocation)
            return nil
        }
        #expect(isCleanError(e, file: path), "\(what): \(e)", sourceLocation: sourceLocation)
        if let item { #expect(e.item == item, "\(what): \(e)", sourceLocation: sourceLocation) }
        return e
    }

    /// Directory entries to damage: first, middle and last. Every damage past the tokenizer
    /// arrays costs a full metadata parse, so the directory is sampled rather than swept.
    static func sampledTensors(_ o: Original) -> [Int] {
        let n = o.layout.tensors.count
        return Array(Set([0, n / 2, n - 1])).sorted()
    }

    /// Offsets that cut every region of the file: fixed header, each metadata entry (key length,
    /// key, type, value), inside the big token arrays, tensor directory entries (name, n_dims,
    /// dims, type, offset), the alignment padding and tensor data (first, middle, last byte).
    static func truncationOffsets(_ o: Original) -> [Int] {
        var offsets: Set<Int> = [1, 3, 4, 6, 8, 12, 15, 16, 20, 23, 24]
        for kv in o.layout.kvs {
            offsets.formUnion([kv.keyLength + 1, kv.keyLength + 9, kv.type + 2, kv.value + 1])
            if let c = kv.arrayCount { offsets.formUnion([c + 4, c + 8 + 3]) }
        }
        // Deep inside the tokenizer arrays.
        if let tokens = o.layout.kvs.first(where: { $0.key == "tokenizer.ggml.tokens" }),
            let merges = o.layout.kvs.first(where: { $0.key == "tokenizer.ggml.merges" })
        {
            for f in stride(from: 0.1, to: 1.0, by: 0.2) {
                offsets.insert(tokens.value + Int(Double(merges.keyLength - tokens.value) * f))
            }
        }
        for i in Self.sampledTensors(o) {
            let t = o.layout.tensors[i]
            offsets.formUnion([t.nameLength + 5, t.nDims + 1, t.dims[0] + 3, t.type + 1, t.offset + 7])
        }
        offsets.insert(o.layout.directoryEnd)
        offsets.insert(o.dataOffset - 1)
        let byOffset = o.tensors.sorted { $0.offset < $1.offset }
        for t in [byOffset[0], byOffset[byOffset.count / 2], byOffset[byOffset.count - 1]] {
            offsets.formUnion([t.offset, t.offset + t.byteCount / 2, t.offset + t.byteCount - 1])
        }
        offsets.insert(o.fileSize - 1)
        return offsets.filter { $0 > 0 && $0 < o.fileSize }.sorted()
    }

    @Test func truncatedAtManyOffsets() throws {
        let o = try Original()
        let offsets = Self.truncationOffsets(o)
        #expect(offsets.count >= 150)
        #expect(offsets.contains { $0 < 24 } && offsets.contains { $0 > o.dataOffset })
        let dir = try TempDir()
        // Cut the same file shorter and shorter: each truncation only discards bytes.
        let file = try PatchableFile(path: dir.file("cut.gguf"), bytes: o.header, size: o.fileSize)
        var messages = Set<String>()
        for k in offsets.reversed() {
            try file.truncate(to: k)
            if let e = expectCleanError(file.path, "truncated at \(k)") {
                #expect(e.message.contains("truncated"), "at \(k): \(e)")
                messages.insert(e.message.split(separator: " ").prefix(3).joined(separator: " "))
            }
        }
        #expect(messages.count > 1)
    }

    /// One targeted corruption: overwrite `bytes` at `offset`; the error must name `item` when given.
    struct Damage: CustomStringConvertible {
        let what: String
        let offset: Int
        let bytes: [UInt8]
        let item: String?
        var description: String { what }
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    static func damages(_ o: Original) -> [Damage] {
        var d: [Damage] = []
        for i in 0..<4 { d.append(Damage(what: "magic byte \(i)", offset: i, bytes: [0xFF], item: nil)) }
        for v: UInt32 in [1, 4, .max] { d.append(Damage(what: "version \(v)", offset: 4, bytes: le(v), item: nil)) }
        for v: UInt64 in [1 << 40, .max] {
            d.append(Damage(what: "tensor count \(v)", offset: 8, bytes: le(v), item: "tensor count"))
            d.append(Damage(what: "metadata count \(v)", offset: 16, bytes: le(v), item: "metadata count"))
        }
        for (i, kv) in o.layout.kvs.enumerated() {
            d.append(
                Damage(
                    what: "key length of \(kv.key)", offset: kv.keyLength, bytes: le(UInt64.max),
                    item: "metadata key #\(i)"))
            d.append(Damage(what: "value type of \(kv.key)", offset: kv.type, bytes: le(UInt32(13)), item: kv.key))
            d.append(
                Damage(what: "value type of \(kv.key) (max)", offset: kv.type, bytes: le(UInt32.max), item: kv.key))
            switch kv.typeID {
            case 8:
                d.append(
                    Damage(
                        what: "string length of \(kv.key)", offset: kv.value, bytes: le(UInt64(1) << 50), item: kv.key))
            case 7: d.append(Damage(what: "bool value of \(kv.key)", offset: kv.value, bytes: [2], item: kv.key))
            case 9:
                if let et = kv.arrayElementType, let c = kv.arrayCount {
                    d.append(Damage(what: "element type of \(kv.key)", offset: et, bytes: le(UInt32(99)), item: kv.key))
                    d.append(
                        Damage(what: "array count of \(kv.key)", offset: c, bytes: le(UInt64(1) << 50), item: kv.key))
                    if kv.arrayElementTypeID == 8 {
                        // The first element's string length.
                        d.append(
                            Damage(
                                what: "first string length in \(kv.key)", offset: c + 8, bytes: le(UInt64.max),
                                item: kv.key))
                    }
                }
            default: break
            }
        }
        let relEnd = o.fileSize - o.dataOffset
        for i in Self.sampledTensors(o) {
            let t = o.layout.tensors[i]
            let name = t.name
            d.append(
                Damage(
                    what: "name length of \(name)", offset: t.nameLength, bytes: le(UInt64.max),
                    item: "tensor #\(i) name"))
            for nd: UInt32 in [0, 5, .max] {
                d.append(Damage(what: "n_dims \(nd) of \(name)", offset: t.nDims, bytes: le(nd), item: name))
            }
            d.append(Damage(what: "dim 0 = 0 of \(name)", offset: t.dims[0], bytes: le(UInt64(0)), item: name))
            d.append(Damage(what: "dim 0 = 2^41 of \(name)", offset: t.dims[0], bytes: le(UInt64(1) << 41), item: name))
            d.append(
                Damage(
                    what: "last dim huge of \(name)", offset: t.dims[t.dims.count - 1], bytes: le(UInt64(1) << 39),
                    item: name))
            for ty: UInt32 in [4, 5, 99, .max] {
                d.append(Damage(what: "tensor type \(ty) of \(name)", offset: t.type, bytes: le(ty), item: name))
            }
            let rel = o.tensors[i].offset - o.dataOffset
            d.append(
                Damage(what: "misaligned offset of \(name)", offset: t.offset, bytes: le(UInt64(rel + 1)), item: name))
            d.append(
                Damage(
                    what: "offset past the end of \(name)", offset: t.offset, bytes: le(UInt64(o.fileSize)), item: name)
            )
            d.append(
                Damage(
                    what: "offset near the end of \(name)", offset: t.offset, bytes: le(UInt64(relEnd / 32 * 32)),
                    item: name))
        }
        return d
    }

    @Test func corruptedFields() throws {
        let o = try Original()
        let damages = Self.damages(o)
        #expect(damages.count >= 150)
        let dir = try TempDir()
        let file = try PatchableFile(path: dir.file("bad.gguf"), bytes: o.header, size: o.fileSize)
        for damage in damages {
            let end = damage.offset + damage.bytes.count
            try file.patch(at: damage.offset, damage.bytes[...])
            expectCleanError(file.path, damage.what, item: damage.item)
            try file.patch(at: damage.offset, o.header[damage.offset..<end])
        }
        // Restored, the file opens again: every failure above came from its damage alone.
        #expect(throws: Never.self) { try GGUFFile(path: file.path) }
    }

    /// An unknown tensor type in the real file names the tensor.
    @Test func unknownTensorTypeNamesTensor() throws {
        let o = try Original()
        let entry = try #require(o.layout.tensors.first { $0.name == "blk.7.ffn_up.weight" })
        var bytes = o.header
        for (i, b) in Self.le(UInt32(77)).enumerated() { bytes[entry.type + i] = b }
        let dir = try TempDir()
        let path = try dir.writeSparse("type.gguf", bytes[...], size: o.fileSize)
        let e = expectCleanError(path, "tensor type 77", item: "blk.7.ffn_up.weight")
        #expect(e?.description.contains("blk.7.ffn_up.weight") == true)
        #expect(e?.description.contains("77") == true)
    }
}
