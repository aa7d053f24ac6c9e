import ServalTensor

/// What the backend is doing with the ops it is given.
enum GraphMode {
    /// Queue each op (the default).
    case eager
    /// Queue each op into a stream capture; host copies' ring regions are logged.
    case capture([StagedCopy])
    /// Ops are skipped (the graph holds them); host copies go to the logged regions.
    case replay([StagedCopy], Int)
}

/// One host → device copy of a captured step: where its bytes sit in the pinned ring.
struct StagedCopy {
    let offset: Int
    let bytes: Int
    let target: UInt64
}

/// The fixed shape a decode graph was captured for.
public struct GraphShape: Sendable, Equatable {
    /// Room for this many KV slot ids over all sequences (the slot list is copied at this size).
    public var slotCapacity: Int
    /// Split-K attention is planned for contexts up to this long.
    public var maxContext: Int

    public init(slotCapacity: Int, maxContext: Int) {
        self.slotCapacity = slotCapacity
        self.maxContext = maxContext
    }
}

/// A decode step captured as a CUDA graph: replayed with one launch after the host has
/// redone its share (slot table, metadata, token ids into the logged ring regions).
public final class CapturedStep: @unchecked Sendable {
    let graph: CUDAGraph
    let log: [StagedCopy]
    public let generation: Int
    public let shape: GraphShape

    init(graph: CUDAGraph, log: [StagedCopy], generation: Int, shape: GraphShape) {
        self.graph = graph
        self.log = log
        self.generation = generation
        self.shape = shape
    }
}

extension CUDABackend {
    /// Replacing a buffer that queued work or a captured graph may use: waits for the
    /// stream and marks captured graphs stale. Refused while capturing or replaying
    /// (that step then runs eagerly).
    func growForGraph() throws {
        switch graphMode {
        case .eager:
            try stream.synchronize()
            generation += 1
        case .capture, .replay:
            throw CUDAError.invalid("a graph step needed a bigger buffer")
        }
    }

    /// Captures `step` (one forward pass of `seqs` one-token sequences) as a graph and
    /// launches it. Throws when the step cannot be captured; nothing of it has then run,
    /// and the caller runs it eagerly.
    public func captureGraph(seqs: Int, shape: GraphShape, _ step: () throws -> Logits) throws -> (
        CapturedStep, Logits
    ) {
        try context.makeCurrent()
        flushPending()
        for a in attentions.compactMap({ $0.value }) {
            try a.reserveDecode(seqs: seqs, slots: shape.slotCapacity, maxContext: shape.maxContext)
        }
        try stream.synchronize()
        try checkErrors()
        ringOffset = 0
        graphShape = shape
        graphMode = .capture([])
        defer {
            graphMode = .eager
            graphShape = nil
        }
        let start = generation
        var logits: Logits?
        var log: [StagedCopy] = []
        let graph = try CUDAGraph(capturing: stream) {
            logits = try step()
            try checkErrors()
            guard generation == start, case .capture(let l) = graphMode else {
                throw CUDAError.invalid("buffers changed while capturing")
            }
            log = l
        }
        guard let logits else { throw CUDAError.invalid("the captured step returned no logits") }
        try graph.launch(on: stream)
        return (CapturedStep(graph: graph, log: log, generation: start, shape: shape), logits)
    }

    /// Replays `captured`: runs `step` with ops skipped and host copies written where the
    /// graph reads them, then launches the graph. Throws when the step does not match the
    /// capture (nothing was launched; the caller runs it eagerly).
    public func replayGraph(_ captured: CapturedStep, _ step: () throws -> Logits) throws -> Logits {
        try context.makeCurrent()
        guard captured.generation == generation else { throw CUDAError.invalid("stale graph") }
        // The previous launch read the same ring regions: it must be done.
        try stream.synchronize()
        try checkErrors()
        graphShape = captured.shape
        graphMode = .replay(captured.log, 0)
        defer {
            graphMode = .eager
            graphShape = nil
        }
        let logits = try step()
        try checkErrors()
        guard case .replay(_, let cursor) = graphMode, cursor == captured.log.count, generation == captured.generation
        else {
            throw CUDAError.invalid("graph replay: the step differs from the captured one")
        }
        idleMeter.work()
        try captured.graph.launch(on: stream)
        ringOffset = captured.log.map { $0.offset + $0.bytes }.max() ?? 0
        return logits
    }
}
