import ServalTensor

/// What layers are built with: the weights, the backend that computes them, this
/// rank's communicator, and the owner of every buffer they put in backend memory.
public final class LoadContext: @unchecked Sendable {
    public let source: WeightSource
    public let backend: any ComputeBackend
    public let communicator: any Communicator
    private var buffers: [DeviceBuffer] = []

    public init(
        source: WeightSource, backend: any ComputeBackend,
        communicator: any Communicator = SingleRankCommunicator()
    ) {
        self.source = source
        self.backend = backend
        self.communicator = communicator
    }

    deinit { for b in buffers { backend.release(b) } }

    public var parallel: ParallelInfo { ParallelInfo(tpRank: communicator.rank, tpSize: communicator.size) }

    /// A host vector copied into backend memory that lives as long as this context.
    func upload(_ values: [Float], name: String) throws(ModelError) -> UnsafeMutablePointer<Float> {
        do {
            let b = try backend.upload(values)
            buffers.append(b)
            return b.floats()
        } catch {
            throw ModelError(source: source.sourceName, "\(name): \(error)")
        }
    }

    /// A stored vector (`name`, `count` elements) in backend memory.
    func vector(_ name: String, count: Int) throws(ModelError) -> UnsafeMutablePointer<Float> {
        try upload(try source.vector(name, count: count), name: name)
    }

    /// A stored matrix made computable by the backend.
    func weight(_ stored: StoredMatrix) throws(ModelError) -> WeightMatrix {
        try stored.upload(to: backend, source: source.sourceName)
    }
}
