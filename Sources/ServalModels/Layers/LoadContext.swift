import ServalTensor

/// What layers are built with: the weights, the backend that computes them, this
/// rank's communicator, and the owner of every buffer they put in backend memory.
public final class LoadContext: @unchecked Sendable {
    public let source: WeightSource
    public let backend: any ComputeBackend
    public let communicator: any Communicator
    /// How a mixture-of-experts model uses the ranks beyond plain tensor parallelism.
    public let layout: ModelParallelism
    /// The ranks attention is tensor-parallel over: every rank (`communicator`) under plain
    /// tensor parallelism; under DP attention this rank's attention DP group (one rank, or
    /// `tp / dp` ranks that split the heads of the group's requests).
    public let attentionCommunicator: any Communicator
    /// `communicator`'s ranks over host memory, for per-step control figures (DP attention's
    /// token counts): `communicator` itself on CPU ranks, the host channel beside a GPU's
    /// device collectives.
    public let controlCommunicator: any Communicator
    private var buffers: [DeviceBuffer] = []

    /// `attentionCommunicator` nil: `communicator`, or one rank under DP attention;
    /// `controlCommunicator` nil: `communicator`.
    public init(
        source: WeightSource, backend: any ComputeBackend,
        communicator: any Communicator = SingleRankCommunicator(), layout: ModelParallelism = ModelParallelism(),
        attentionCommunicator: (any Communicator)? = nil, controlCommunicator: (any Communicator)? = nil
    ) {
        self.source = source
        self.backend = backend
        self.communicator = communicator
        self.layout = layout
        self.attentionCommunicator =
            attentionCommunicator ?? (layout.dataParallelAttention ? SingleRankCommunicator() : communicator)
        self.controlCommunicator = controlCommunicator ?? communicator
    }

    deinit { for b in buffers { backend.release(b) } }

    public var parallel: ParallelInfo { ParallelInfo(tpRank: communicator.rank, tpSize: communicator.size) }
    /// Expert parallel: this rank's EP rank among the EP ranks (`rank / (tp/ep)`) and its
    /// place among the ranks that split the width of that EP rank's experts (`rank % (tp/ep)`;
    /// one rank when `--ep-size` = `--tp-size`).
    public var expertRanks: (ep: ParallelInfo, width: ParallelInfo) {
        let t = parallel
        let ep = layout.expertParallelSize > 0 ? min(layout.expertParallelSize, t.tpSize) : t.tpSize
        let w = max(1, t.tpSize / ep)
        return (ParallelInfo(tpRank: t.tpRank / w, tpSize: ep), ParallelInfo(tpRank: t.tpRank % w, tpSize: w))
    }

    /// This rank's place in `attentionCommunicator`.
    public var attentionParallel: ParallelInfo {
        ParallelInfo(tpRank: attentionCommunicator.rank, tpSize: attentionCommunicator.size)
    }

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

    /// Matrices one projection reads together, made computable by the backend as a group.
    func weights(_ stored: [StoredMatrix]) throws(ModelError) -> [WeightMatrix] {
        try StoredMatrix.upload(stored, to: backend, source: source.sourceName)
    }

    /// Matrix `name` kept as block-scaled fp8 in backend memory, when it is stored so and the
    /// backend computes fp8 (`ComputeBackend.computesBlockScaledFP8`); nil otherwise (the caller
    /// loads it with `source.matrix`, dequantized at load, as every CPU load does).
    func blockScaledWeight(_ name: String, rows: Int, cols: Int) throws(ModelError) -> WeightMatrix? {
        guard backend.computesBlockScaledFP8, let m = try source.blockScaledMatrix(name, rows: rows, cols: cols) else {
            return nil
        }
        return try m.upload(to: backend, source: source.sourceName)
    }
}

/// What the ranks of a group do besides plain tensor parallelism (SGLang's
/// `--enable-dp-attention` and `--ep-size`, for DeepSeek models; docs/parallelism.md).
public struct ModelParallelism: Sendable, Equatable {
    /// Attention runs data-parallel: the ranks form attention DP groups (the load context's
    /// `attentionCommunicator`: one rank each, or `tp / dp` ranks splitting the heads), each
    /// with its own requests and its own whole latent KV pool (replicated inside a group);
    /// the dense and MoE layers run over every rank with every group's tokens gathered
    /// before them and their sums scattered back after.
    public var dataParallelAttention = false
    /// Routed experts are partitioned over the ranks (each rank holds whole experts)
    /// instead of each expert's intermediate width being split.
    public var expertParallel = false
    /// Expert parallel: how many EP ranks the experts are partitioned over (`--ep-size`; 0:
    /// every rank). With fewer than the ranks, EP rank e is the contiguous ranks
    /// `e·(tp/ep) ..< (e+1)·(tp/ep)`, which split the width of each of its experts (SGLang's
    /// `moe_ep` × `moe_tp`; `LoadContext.expertRanks`).
    public var expertParallelSize = 0
    /// Expert parallel: physical expert slots beyond one per logical expert (EPLB's
    /// `--ep-num-redundant-experts`), given to the hottest experts.
    public var redundantExperts = 0
    /// Expert parallel: where the experts start (`--init-expert-location`); nil: every
    /// expert equally hot.
    public var initialExpertLocation: InitialExpertLocation? = nil
    /// Nodes the ranks span (the placement is hierarchical over them).
    public var nodes = 1
    /// Two-batch overlap (`--enable-two-batch-overlap`, expert parallel without DP
    /// attention): a MoE layer's batch of at least `twoBatchOverlapMinTokens` tokens runs as
    /// two micro-batches, one's combine overlapping the other's experts.
    public var twoBatchOverlap = false
    public var twoBatchOverlapMinTokens = 32
    /// How a dense (Llama-family) model splits its attention output and MLP down
    /// projections; DeepSeek models keep the all-reduce layout.
    public var denseLayout = DenseTPLayout.exact

    public init(dataParallelAttention: Bool = false, expertParallel: Bool = false) {
        self.dataParallelAttention = dataParallelAttention
        self.expertParallel = expertParallel
    }
}

/// `--init-expert-location`: a dumped distribution's per-layer logical counts (placed by
/// the EPLB algorithm) or a placement table itself.
public enum InitialExpertLocation: Sendable, Equatable {
    case logicalCount([[Double]])
    case physicalToLogical([[Int]])
}

/// How a dense model's attention output (`o_proj`) and MLP down projections are split over
/// the ranks of a tensor-parallel group (docs/parallelism.md, "How close TP=2 is to one rank").
/// Chosen with `SERVAL_TP_LAYOUT` (`exact` or `all-reduce`) when the server starts.
public enum DenseTPLayout: String, Sendable, Equatable, CaseIterable {
    /// Every projection split by output rows only: the input rows are all-gathered first
    /// (the attention output of every head; the whole intermediate activation), each rank
    /// computes its rows with the whole dot product, and the output rows are all-gathered.
    /// Every rank then holds one rank's activations bit for bit (4 all-gathers per layer).
    case exact
    /// Megatron's (and SGLang's) layout: `o_proj` and `down` split by input columns, partial
    /// sums all-reduced (2 all-reduces per layer). The partial sums add up in another float
    /// order than one rank's running sum, so the logits differ from one rank's by ~1 % with
    /// quantized weights (each matmul rounds its input to int8 blocks).
    case allReduce = "all-reduce"
}
