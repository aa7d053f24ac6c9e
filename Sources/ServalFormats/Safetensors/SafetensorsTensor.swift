import ServalTensor

/// Where one tensor lives in a safetensors file.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions in row-major (PyTorch/NumPy) order: `shape.last` is the contiguous one,
    /// so a `Linear(in, out)` weight has shape `[out, in]`. This is the reverse of GGUF's order;
    /// `ggmlShape` gives it GGUF-style. A scalar has shape `[]`.
    public let shape: [Int]
    /// The type as stored in the header.
    public let storedType: SafetensorsDType
    /// Absolute byte offset of the tensor's data in the file.
    public let offset: Int
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }

    /// The shape innermost-first, as `GGUFTensorInfo.shape` stores it.
    public var ggmlShape: [Int] { shape.reversed() }
}

/// A tensor of a safetensors file or checkpoint that Serval can compute with
/// (F32, F16 or BF16), with a zero-copy pointer to its bytes.
///
/// It keeps its file's mapping alive, so the pointer stays valid as long as this value exists.
/// The data is not necessarily aligned to the element size (safetensors packs tensors
/// back to back), so read it with `loadUnaligned` or copy it.
public struct SafetensorsTensor: @unchecked Sendable {
    public let info: SafetensorsTensorInfo
    public let type: DType
    /// The file the tensor lives in (keeps its mapping alive).
    public let file: SafetensorsFile

    public var name: String { info.name }
    public var shape: [Int] { info.shape }
    public var elementCount: Int { info.elementCount }
    public var byteCount: Int { info.byteCount }
    public var data: UnsafeRawPointer { file.data(of: info) }
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: data, count: info.byteCount) }
}
