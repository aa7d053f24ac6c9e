import Foundation
import ServalEngine
import ServalModels

/// SGLang's expert distribution routes (`/start_expert_distribution_record`,
/// `/stop_expert_distribution_record`, `/dump_expert_distribution_record`, GET or POST)
/// and the per-layer balancedness in `/metrics` (docs/eplb.md). Start and stop answer
/// SGLang's text; the dump answers the window's counts as JSON (SGLang writes a file
/// instead), a body `--init-expert-location` accepts.
extension ServalAPI {
    func startExpertRecord() async throws -> HTTPReply {
        try await runExpertControl(.record(true))
        return .text(
            status: 200, "Start recording the expert distribution.\n", contentType: "text/plain; charset=utf-8")
    }

    func stopExpertRecord() async throws -> HTTPReply {
        try await runExpertControl(.record(false))
        return .text(status: 200, "Stop recording the expert distribution.\n", contentType: "text/plain; charset=utf-8")
    }

    func dumpExpertRecord() async throws -> HTTPReply {
        guard let d = try await runExpertControl(.gather(.record, reset: false)) else {
            throw APIError.internalError("the engine returned no expert distribution")
        }
        return .ok(Self.json(d))
    }

    @discardableResult
    private func runExpertControl(_ c: ExpertControl) async throws -> ExpertDistribution? {
        do {
            return try await engine.expertControl(c)
        } catch let e as EngineError {
            if case .invalidRequest(let m) = e { throw APIError.invalid(m, code: "not_available") }
            throw APIError.internalError("\(e)")
        }
    }

    /// `logical_count` (MoE layer × logical expert) is what `--init-expert-location` places
    /// from; `physical_count` and `current_physical_to_logical_map` are per physical slot
    /// (rank r holds slots r·S ..< (r+1)·S).
    static func json(_ d: ExpertDistribution) -> JSONValue {
        func rows(_ r: [[Int]]) -> JSONValue { .array(r.map { .array($0.map { .int($0) }) }) }
        let layers = d.physicalCount.indices
        return [
            "forward_passes": .int(d.forwardPasses),
            "layer_ids": .array(d.layerIndices.map { .int($0) }),
            "num_logical_experts": .int(d.placement.logicalExperts),
            "num_physical_experts": .int(d.placement.physicalSlots),
            "ep_size": .int(d.placement.ranks),
            "logical_count": rows(d.logicalCount),
            "physical_count": rows(d.physicalCount),
            "current_physical_to_logical_map": rows(d.placement.physicalToLogical),
            "rank_load": rows(layers.map { d.rankLoad($0) }),
            "balancedness": .array(layers.map { .double(d.balancedness($0)) }),
        ]
    }

    /// `sglang:eplb_balancedness{layer="…"}`: mean ÷ max of the expert-parallel ranks'
    /// routed tokens in each MoE layer since the start (or EPLB's last rebalance).
    func expertMetrics() async -> String {
        guard engine.recordsExpertLoad,
            let d = try? await engine.expertControl(.gather(.rebalance, reset: false))
        else { return "" }
        let name = "sglang:eplb_balancedness"
        let model = PrometheusRenderer.escapeLabel(config.servedModelName)
        var out = "# HELP \(name) Balancedness of MoE in expert parallelism (mean / max tokens over EP ranks).\n"
        out += "# TYPE \(name) gauge\n"
        for l in d.physicalCount.indices {
            out +=
                "\(name){model_name=\"\(model)\",layer=\"\(d.layerIndices[l])\"} \(PrometheusRenderer.number(d.balancedness(l)))\n"
        }
        return out
    }
}
