import ServalEngine
import ServalModels
import Testing
@testable import ServalServer

/// SGLang's expert distribution routes and the balancedness metric over an engine double.
@Suite struct ExpertRouteTests {
    static func distribution() throws -> ExpertDistribution {
        let placement = try ExpertPlacement(
            logicalExperts: 4, ranks: 2, physicalToLogical: [[0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 2, 3]])
        // Layer 3: rank 0 ran 30 + 10 + 5 = 45, rank 1 5 + 0 + 10 = 15; layer 5 even.
        return ExpertDistribution(
            layerIndices: [3, 5], placement: placement,
            physicalCount: [[30, 10, 5, 0, 5, 10], [4, 4, 2, 2, 4, 4]], forwardPasses: 7)
    }

    @Test func recordRoutesAnswerSGLangsTextAndTheDumpAsJSON() async throws {
        let engine = ScriptedEngine()
        engine.experts = try Self.distribution()
        let api = makeAPI(engine: engine)
        guard case .text(200, let start, _) = await api.post("/start_expert_distribution_record", "") else {
            Issue.record("start did not answer text")
            return
        }
        #expect(start == "Start recording the expert distribution.\n")
        guard case .text(200, let stop, _) = await api.get("/stop_expert_distribution_record") else {
            Issue.record("stop did not answer text")
            return
        }
        #expect(stop == "Stop recording the expert distribution.\n")
        let dump = try #require(await api.post("/dump_expert_distribution_record", "").json)
        #expect(engine.expertControls == [.record(true), .record(false), .gather(.record, reset: false)])
        #expect(dump["layer_ids"] == [3, 5])
        #expect(dump["num_physical_experts"] == 6 && dump["ep_size"] == 2 && dump["forward_passes"] == 7)
        #expect(dump["logical_count"] == [[35, 20, 5, 0], [4, 4, 6, 6]])
        #expect(dump["rank_load"] == [[45, 15], [10, 10]])
        #expect(dump["balancedness"] == [.double(30.0 / 45.0), .double(1)])
    }

    @Test func metricsCarryBalancednessPerLayer() async throws {
        let engine = ScriptedEngine()
        engine.experts = try Self.distribution()
        guard case .text(200, let text, _) = await makeAPI(engine: engine).get("/metrics") else {
            Issue.record("metrics not text")
            return
        }
        #expect(text.contains("# TYPE sglang:eplb_balancedness gauge\n"))
        #expect(text.contains("sglang:eplb_balancedness{model_name=\"smol\",layer=\"5\"} 1.0\n"))
        #expect(text.contains("sglang:eplb_balancedness{model_name=\"smol\",layer=\"3\"} 0.666"))
    }

    @Test func aDenseModelAnswers400AndExportsNoBalancedness() async {
        let api = makeAPI()
        let r = await api.post("/start_expert_distribution_record", "")
        #expect(r.statusCode == 400)
        #expect(await api.get("/dump_expert_distribution_record").statusCode == 400)
        if case .text(200, let text, _) = await api.get("/metrics") {
            #expect(!text.contains("eplb_balancedness"))
        } else {
            Issue.record("metrics not text")
        }
    }
}
