import ArgumentParser
import ServalEngine
import ServalModels

/// DP attention and expert parallelism at launch: which models they apply to, and the KV
/// capacity effect of DP attention printed at startup (docs/parallelism.md).
extension LaunchServer {
    /// DP attention and expert parallelism need a DeepSeek (MLA + MoE) model.
    func checkModelParallelism(_ lm: any LanguageModel, layout: ParallelLayout) throws {
        let deepSeek = lm as? DeepSeekModel
        if layout.enableDPAttention, deepSeek == nil {
            throw ValidationError(
                "--enable-dp-attention needs an MLA model (DeepSeek-V2/V3); \(lm.info.architecture) splits its KV heads under --tp-size instead."
            )
        }
        do {
            try layout.validate(experts: deepSeek.map { $0.config.routedExperts })
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// `SERVAL_TP_LAYOUT` (`exact`, the default, or `all-reduce`): how a dense model's
    /// `o_proj` and `down` are split over the tensor-parallel ranks (docs/parallelism.md).
    /// Every process reads its own environment: the rank processes inherit rank 0's, and
    /// the other nodes of a multi-node group must set the same value.
    static func denseTPLayout(_ environment: [String: String]) throws -> DenseTPLayout {
        guard let value = environment["SERVAL_TP_LAYOUT"], !value.isEmpty else { return .exact }
        guard let layout = DenseTPLayout(rawValue: value) else {
            let names = DenseTPLayout.allCases.map(\.rawValue).joined(separator: " or ")
            throw ValidationError("SERVAL_TP_LAYOUT must be \(names); got '\(value)'.")
        }
        return layout
    }

    /// What the ranks do besides tensor parallelism, for the startup line.
    func parallelSummary(_ layout: ParallelLayout, denseLayout: DenseTPLayout?) -> String {
        var parts: [String] = []
        switch denseLayout {
        case .exact: parts.append("exact layout (o_proj/down by output rows, all-gathers; SERVAL_TP_LAYOUT)")
        case .allReduce: parts.append("all-reduce layout (o_proj/down by input columns; SERVAL_TP_LAYOUT)")
        case nil: break
        }
        if layout.enableDPAttention {
            let per = layout.tpSize / layout.dpSize
            parts.append(
                "DP attention \(layout.dpSize) (\(per) rank\(per == 1 ? "" : "s, heads split,") per group)")
        }
        if layout.epSize > 1 { parts.append("expert parallel \(layout.epSize)") }
        return parts.isEmpty ? "" : "; " + parts.joined(separator: ", ")
    }

    /// For an MLA model over several ranks: latent KV bytes per token on each rank, and how
    /// many tokens the whole server holds with the same per-rank pool under TP (every rank
    /// holds every token's latent row: it cannot be split by heads), under DP attention with
    /// several ranks per group when that runs (the rows replicated inside a group, split
    /// across groups) and under DP attention with one rank per group (each rank holds only
    /// its own requests' rows). `perRankTokens`: one rank's pool (one DP group's).
    func printKVCapacityEffect(_ info: ModelInfo, layout: ParallelLayout, perRankTokens: Int) {
        guard layout.tpSize > 1, info.kvLayout.hasPrefix("mla") else { return }
        let t = layout.tpSize, d = layout.dpSize, bytes = info.kvBytesPerToken
        let mib = Double(perRankTokens) * Double(bytes) / 1_048_576
        let active = layout.enableDPAttention ? "DP attention \(d)" : "TP=\(t)"
        var grouped = ""
        if layout.enableDPAttention, d < t {
            grouped =
                "DP attention \(d) (latent rows replicated on the \(t / d) ranks of a group, each group only its "
                + "own requests' rows): the server holds \(d * perRankTokens) tokens; "
        }
        print(
            "KV capacity (\(info.kvLayout), \(active) running): \(bytes) latent bytes per token per rank, "
                + "\(perRankTokens) tokens per rank (\(String(format: "%.1f", mib)) MiB); "
                + "TP=\(t) (latent rows replicated on every rank): the server holds \(perRankTokens) tokens; "
                + grouped
                + "DP attention \(t) (each rank only its own requests' rows): the server holds \(t * perRankTokens) tokens"
        )
    }
}
