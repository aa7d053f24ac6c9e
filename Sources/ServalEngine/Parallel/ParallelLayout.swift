/// How one model is spread over ranks: SGLang's parallelism flags (`--tp-size`,
/// `--dp-size` with `--enable-dp-attention`, `--ep-size`, `--pp-size`, `--nnodes`,
/// `--node-rank`, `--dist-init-addr`) and the rules that make a layout valid. Each rule
/// that fails is one line saying what to change (`ParallelLayoutError`).
public struct ParallelLayout: Sendable, Equatable {
    /// Tensor-parallel ranks: every weight split this many ways (all nodes together).
    public var tpSize = 1
    /// Data-parallel replicas (behind the router), or attention DP groups with `enableDPAttention`.
    public var dpSize = 1
    public var enableDPAttention = false
    public var ppSize = 1
    /// Expert-parallel ranks (routed experts split over them).
    public var epSize = 1
    public var nnodes = 1
    public var nodeRank = 0
    /// `host:port` of node 0's bootstrap listener (required with `nnodes > 1`).
    public var distInitAddr: String? = nil

    public init() {}

    /// Tensor-parallel ranks that run on this node.
    public var ranksPerNode: Int { tpSize / max(1, nnodes) }
    /// Global rank of this node's first rank.
    public var firstRank: Int { nodeRank * ranksPerNode }
    /// Rank processes of one model replica on this node (plain `--dp-size` replicas behind
    /// the router are separate servers and are not counted: they may share the cores).
    public var processesPerNode: Int { ranksPerNode }
    public var isSingleRank: Bool { tpSize == 1 && nnodes == 1 }

    /// The rules that need neither the model nor the machine (SGLang's asserts).
    public func validate() throws(ParallelLayoutError) {
        func fail(_ m: String) -> ParallelLayoutError { ParallelLayoutError(m) }
        guard tpSize >= 1 else { throw fail("--tp-size must be at least 1, got \(tpSize).") }
        guard ppSize >= 1 else { throw fail("--pp-size must be at least 1, got \(ppSize).") }
        guard ppSize == 1 else {
            throw fail(
                "--pp-size \(ppSize): pipeline parallelism is not supported (as in SGLang); use --tp-size \(tpSize * ppSize) instead."
            )
        }
        guard dpSize >= 1 else { throw fail("--dp-size must be at least 1, got \(dpSize).") }
        guard epSize >= 1 else { throw fail("--ep-size must be at least 1, got \(epSize).") }
        guard nnodes >= 1 else { throw fail("--nnodes must be at least 1, got \(nnodes).") }
        guard nodeRank >= 0, nodeRank < nnodes else {
            throw fail("--node-rank must be in 0..<\(nnodes) (--nnodes \(nnodes)), got \(nodeRank).")
        }
        guard tpSize % nnodes == 0 else {
            throw fail(
                "--tp-size \(tpSize) must be a multiple of --nnodes \(nnodes) (each node runs tp/nnodes ranks).")
        }
        if nnodes > 1 {
            guard let addr = distInitAddr else {
                throw fail(
                    "--nnodes \(nnodes) needs --dist-init-addr HOST:PORT (node 0's address, the same on every node).")
            }
            guard Self.parseAddress(addr) != nil else {
                throw fail("--dist-init-addr must be HOST:PORT with a port in 1...65535, got '\(addr)'.")
            }
            guard dpSize == 1 || enableDPAttention else {
                throw fail(
                    "--dp-size \(dpSize) without --enable-dp-attention runs on one node only; use the router (launch-router) across nodes."
                )
            }
        } else if nodeRank != 0 {
            throw fail("--node-rank \(nodeRank) needs --nnodes > \(nodeRank).")
        }
        if enableDPAttention {
            guard dpSize > 1 else {
                throw fail("--enable-dp-attention needs --dp-size > 1 (the number of attention DP groups).")
            }
            guard dpSize <= tpSize else {
                throw fail("--dp-size \(dpSize) must be at most --tp-size \(tpSize) with --enable-dp-attention.")
            }
            guard tpSize % dpSize == 0 else {
                throw fail(
                    "--tp-size \(tpSize) must be a multiple of --dp-size \(dpSize) with --enable-dp-attention (each DP group has tp/dp ranks)."
                )
            }
        }
        if epSize > 1 {
            guard epSize <= tpSize, tpSize % epSize == 0 else {
                throw fail("--ep-size \(epSize) must divide --tp-size \(tpSize) (experts are split over the TP ranks).")
            }
        }
    }

    /// The rules against the machine: `devices` is how many ranks this node can host
    /// (CPU cores for the CPU backend, GPUs for a GPU backend), named by `deviceName`.
    public func validate(devices: Int, deviceName: String) throws(ParallelLayoutError) {
        try validate()
        guard processesPerNode <= devices else {
            let what = "--tp-size \(tpSize)\(nnodes > 1 ? " over \(nnodes) nodes" : "")"
            throw ParallelLayoutError(
                "\(what) needs \(processesPerNode) ranks on this node but it has \(devices) \(deviceName); use fewer ranks (or more --nnodes)."
            )
        }
    }

    /// DP attention's groups (`tp / dp` contiguous ranks each), or nil without DP attention.
    public var dpAttentionGroups: DPAttentionGroups? {
        guard enableDPAttention, dpSize >= 1, tpSize >= dpSize, tpSize % dpSize == 0 else { return nil }
        return DPAttentionGroups(ranks: tpSize, groups: dpSize)
    }

    /// What Serval runs of the valid layouts: DP attention with one rank per group or with
    /// attention tensor parallel inside each group (`--dp-size` < `--tp-size`, one node
    /// only: a group's ranks share a memory segment), and expert parallelism over every rank
    /// (`--ep-size` = `--tp-size`) or over EP ranks of `tp / ep` ranks each that split the
    /// width of their experts (`--ep-size` < `--tp-size`).
    public func validateAvailable() throws(ParallelLayoutError) {
        if enableDPAttention, dpSize < tpSize, nnodes > 1 {
            throw ParallelLayoutError(
                "--enable-dp-attention with --dp-size \(dpSize) < --tp-size \(tpSize) (attention tensor parallel inside a DP group) runs on one node only; use --nnodes 1 or --dp-size \(tpSize)."
            )
        }
    }

    /// The rules against the model: `experts` routed experts (nil for a dense model).
    public func validate(experts: Int?) throws(ParallelLayoutError) {
        guard epSize > 1 else { return }
        guard let experts, experts > 0 else {
            throw ParallelLayoutError(
                "--ep-size \(epSize) needs a mixture-of-experts model; this one has no routed experts.")
        }
        guard experts % epSize == 0 else {
            throw ParallelLayoutError(
                "--ep-size \(epSize) must divide the model's \(experts) routed experts; use an --ep-size that does.")
        }
    }

    /// `host:port` → (host, port), or nil.
    public static func parseAddress(_ s: String) -> (host: String, port: Int)? {
        guard let colon = s.lastIndex(of: ":") else { return nil }
        let host = String(s[..<colon]), portText = s[s.index(after: colon)...]
        guard !host.isEmpty, let port = Int(portText), (1...65535).contains(port) else { return nil }
        return (host, port)
    }
}

/// One line saying which layout rule failed and what to change.
public struct ParallelLayoutError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
