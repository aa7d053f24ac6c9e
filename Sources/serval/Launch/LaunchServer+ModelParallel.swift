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

    /// What the ranks do besides tensor parallelism, for the startup line.
    func parallelSummary(_ layout: ParallelLayout) -> String {
        var parts: [String] = []
        if layout.enableDPAttention {
            parts.append("DP attention \(layout.dpSize) (\(layout.tpSize / layout.dpSize) rank per group)")
        }
        if layout.epSize > 1 { parts.append("expert parallel \(layout.epSize)") }
        return parts.isEmpty ? "" : "; " + parts.joined(separator: ", ")
    }

    /// For an MLA model over several ranks: latent KV bytes per token on each rank, and how
    /// many tokens the whole server holds with the same per-rank pool under TP (every rank
    /// holds every token's latent row: it cannot be split by heads) and under DP attention
    /// (each rank holds only its own requests' rows).
    func printKVCapacityEffect(_ info: ModelInfo, layout: ParallelLayout, perRankTokens: Int) {
        guard layout.tpSize > 1, info.kvLayout.hasPrefix("mla") else { return }
        let t = layout.tpSize, bytes = info.kvBytesPerToken
        let mib = Double(perRankTokens) * Double(bytes) / 1_048_576
        let active = layout.enableDPAttention ? "DP attention \(layout.dpSize)" : "TP=\(t)"
        print(
            "KV capacity (\(info.kvLayout), \(active) running): \(bytes) latent bytes per token per rank, "
                + "\(perRankTokens) tokens per rank (\(String(format: "%.1f", mib)) MiB); "
                + "TP=\(t) (latent rows replicated on every rank): the server holds \(perRankTokens) tokens; "
                + "DP attention \(t) (each rank only its own requests' rows): the server holds \(t * perRankTokens) tokens"
        )
    }
}
