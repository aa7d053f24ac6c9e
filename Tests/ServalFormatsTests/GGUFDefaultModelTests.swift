import Foundation
import Testing
import ServalTensor
@testable import ServalFormats

/// The real default model parses with the values SmolLM2-135M's architecture implies.
@Suite(.enabled(if: DefaultModel.isAvailable))
struct GGUFDefaultModelTests {
    // SmolLM2-135M: 30 layers, hidden 576, 9 heads of 64, 3 KV heads, FFN 1536, vocab 49152.
    let layers = 30, hidden = 576, heads = 9, kvHeads = 3, headDim = 64, ffn = 1536, vocab = 49152

    @Test func headerAndMetadata() throws {
        let g = try GGUFFile(path: DefaultModel.path)
        #expect(g.version == 3)
        #expect(g.architecture == "llama")
        #expect(g.alignment == 32)
        #expect(g.dataOffset % g.alignment == 0)
        #expect(g["llama.block_count"]?.int == layers)
        #expect(g["llama.embedding_length"]?.int == hidden)
        #expect(g["llama.feed_forward_length"]?.int == ffn)
        #expect(g["llama.attention.head_count"]?.int == heads)
        #expect(g["llama.attention.head_count_kv"]?.int == kvHeads)
        #expect(g["llama.rope.dimension_count"]?.int == headDim)
        #expect(g["tokenizer.ggml.model"]?.string == "gpt2")
        let tokens = try #require(g["tokenizer.ggml.tokens"]?.stringArray)
        #expect(tokens.count == vocab)
        #expect(g["tokenizer.ggml.token_type"]?.intArray?.count == vocab)
        #expect((g["tokenizer.ggml.merges"]?.stringArray?.count ?? 0) > 40_000)
        #expect(g["tokenizer.ggml.add_bos_token"]?.bool == false)
        #expect(g["tokenizer.chat_template"]?.string?.contains("<|im_start|>") == true)
        // Keys come back in file order, each once.
        #expect(g.metadataKeys.first == "general.architecture")
        #expect(Set(g.metadataKeys).count == g.metadataKeys.count)
        #expect(g.metadataKeys.count == g.metadata.count)
    }

    /// The huge-page copy holds exactly the file's bytes, and tensors resolve the same.
    @Test func hugePageResidencyMatchesTheMapping() throws {
        let mapped = try MappedFile(path: DefaultModel.path, residency: .mapped)
        let copied = try MappedFile(path: DefaultModel.path, residency: .hugePages)
        #expect(copied.size == mapped.size)
        #expect(memcmp(copied.base, mapped.base, mapped.size) == 0)
        if MappedFile.hugePagesAvailable() {
            #expect(copied.residency == .hugePages)
            #expect(Int(bitPattern: copied.base) % MappedFile.hugePageBytes == 0)
        } else {
            print(
                "hugePageResidencyMatchesTheMapping: transparent huge pages are off here; checked the mapped fallback")
            #expect(copied.residency == .mapped)
        }
        let g = try GGUFFile(path: DefaultModel.path, residency: .hugePages)
        #expect(g.tensors.count == 2 + 9 * layers)
    }

    @Test func tensorDirectory() throws {
        let g = try GGUFFile(path: DefaultModel.path)
        // token_embd + output_norm + 9 per layer; the output matrix is tied to token_embd.
        #expect(g.tensors.count == 2 + 9 * layers)
        #expect(g.tensorInfo("output.weight") == nil)

        let embd = try g.require("token_embd.weight")
        #expect(embd.shape == [hidden, vocab])
        #expect(embd.type == .q8_0)
        #expect(try g.require("output_norm.weight").shape == [hidden])
        for i in 0..<layers {
            let p = "blk.\(i)."
            let expected: [(String, [Int])] = [
                ("attn_norm.weight", [hidden]), ("ffn_norm.weight", [hidden]),
                ("attn_q.weight", [hidden, heads * headDim]), ("attn_k.weight", [hidden, kvHeads * headDim]),
                ("attn_v.weight", [hidden, kvHeads * headDim]), ("attn_output.weight", [heads * headDim, hidden]),
                ("ffn_gate.weight", [hidden, ffn]), ("ffn_up.weight", [hidden, ffn]),
                ("ffn_down.weight", [ffn, hidden]),
            ]
            for (name, shape) in expected {
                let t = try g.require(p + name)
                #expect(t.shape == shape, "\(p + name)")
                #expect(t.type == (shape.count == 1 ? DType.f32 : DType.q4_1), "\(p + name)")
            }
        }

        // Tensors lie inside the file, aligned, without overlapping, and byte counts match shape × type.
        let sorted = g.tensors.sorted { $0.offset < $1.offset }
        var end = g.dataOffset
        for t in sorted {
            #expect(t.offset >= end, "\(t.name) overlaps the previous tensor")
            #expect((t.offset - g.dataOffset) % g.alignment == 0)
            #expect(t.byteCount == t.type.byteCount(elements: t.elementCount))
            end = t.offset + t.byteCount
        }
        let h = try FileHandleSize.of(DefaultModel.path)
        #expect(end <= h)

        // The data pointer addresses the tensor's bytes: an F32 norm weight holds finite, non-zero values.
        let norm = try g.require("blk.0.attn_norm.weight")
        let p = g.data(of: norm)
        var nonZero = 0
        for i in 0..<hidden {
            let v = p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
            #expect(v.isFinite)
            if v != 0 { nonZero += 1 }
        }
        #expect(nonZero > hidden / 2)
    }

    @Test func missingTensorNamesItAndTheFile() throws {
        let g = try GGUFFile(path: DefaultModel.path)
        let (e, other) = formatError { try g.require("blk.99.attn_q.weight") }
        #expect(other == nil)
        let err = try #require(e)
        #expect(err.item == "blk.99.attn_q.weight")
        #expect(isCleanError(err, file: DefaultModel.path))
    }

    /// Re-encoding what the reader parsed reproduces the file's header byte for byte, so the
    /// reader lost nothing (value types, key order, strings, shapes, types, offsets).
    @Test func headerReencodesExactly() throws {
        let g = try GGUFFile(path: DefaultModel.path)
        let original = try DefaultModel.prefix(g.dataOffset)
        let layout = GGUFLayout(original)

        // Metadata: the builder's encoding of the parsed values equals the file's bytes.
        var b = GGUFBuilder()
        b.version = g.version
        b.metadata = g.metadataKeys.compactMap { k in g.metadata[k].map { (k, $0) } }
        let built = b.build().bytes
        #expect(Array(original[0..<8]) == Array(built[0..<8]))  // magic, version
        #expect(Array(original[16..<24]) == Array(built[16..<24]))  // metadata count
        #expect(Array(original[24..<layout.metadataEnd]) == Array(built[24..<layout.metadataEnd]))

        // Tensor directory: each entry's name, dims, type and offset are what the reader reports.
        func int(_ at: Int, _ n: Int) -> Int { original[at..<at + n].reversed().reduce(0) { $0 << 8 | Int($1) } }
        #expect(int(8, 8) == g.tensors.count)
        #expect(layout.tensors.map(\.name) == g.tensors.map(\.name))
        for (entry, t) in zip(layout.tensors, g.tensors) {
            #expect(int(entry.nDims, 4) == t.shape.count)
            #expect(entry.dims.map { int($0, 8) } == t.shape)
            #expect(UInt32(int(entry.type, 4)) == t.type.rawValue)
            #expect(g.dataOffset + int(entry.offset, 8) == t.offset)
        }
        #expect(g.dataOffset == (layout.directoryEnd + 31) / 32 * 32)
    }
}

/// File size via stat, for checking offsets against it.
enum FileHandleSize {
    static func of(_ path: String) throws -> Int {
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        return (attrs[.size] as? NSNumber)?.intValue ?? 0
    }
}
