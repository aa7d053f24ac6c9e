import Foundation
import ServalModels
import ServalTestSupport
import ServalTokenizer
import Testing

@testable import ServalEngine

/// A prefill engine and a decode engine on the real default model, KV moved over loopback
/// TCP, the scheduler's and slot table's integrity checked after every step on both: the
/// decode side gives the model's own greedy tokens, through a pool too small for all
/// requests at once (back-pressure), and ends with every slot accounted for.
@Suite(.serialized) struct DisaggregationEngineTests {
    @Test(.enabled(if: TestModel.isPresent))
    func prefillAndDecodeEnginesGiveTheModelsGreedyTokens() async throws {
        let cases = Array(try LlamaReference.load().cases.prefix(4))
        // One model per engine: a model's workspace serves one forward pass at a time.
        let model = try LlamaModel.load(gguf: TestModel.path, threads: 1)
        let decodeModel = try LlamaModel.load(gguf: TestModel.path, threads: 1)
        let tokenizer = try Tokenizer.load(modelPath: TestModel.path)
        let count = 6
        var pc = EngineConfig()
        pc.maxTotalTokens = 2048
        pc.chunkedPrefillSize = 8
        pc.checkIntegrity = true
        pc.disaggregation = DisaggregationConfig(mode: .prefill)
        pc.disaggregation?.bootstrapPort = 0
        let prefill = try Engine(model: model, decoder: tokenizer, config: pc)
        let port = try #require(prefill.bootstrapPort)
        var dc = EngineConfig()
        // Room for about two of the requests at a time: the others wait for slots.
        dc.maxTotalTokens = 2 * (cases.map(\.prompt_ids.count).max() ?? 32) + 2 * count + 4
        dc.checkIntegrity = true
        dc.disaggregation = DisaggregationConfig(mode: .decode)
        dc.disaggregation?.timeout = 60
        let decode = try Engine(model: decodeModel, decoder: tokenizer, config: dc)

        let results = await withTaskGroup(of: (Int, Collected).self) { group in
            for (i, c) in cases.enumerated() {
                var p = SamplingParams()
                p.temperature = 0
                p.maxNewTokens = count
                p.ignoreEOS = true
                var request = GenerateRequest(rid: "r\(i)", inputIDs: c.prompt_ids, sampling: p)
                request.bootstrap = BootstrapInfo(host: "127.0.0.1", port: port, room: UInt64(100 + i))
                let r = request
                // The prefill side's own answers are keyed -1, -2, ...
                group.addTask { (-1 - i, await collect(prefill.submit(r))) }
                group.addTask { (i, await collect(decode.submit(r))) }
            }
            var out: [Int: Collected] = [:]
            for await (i, c) in group { out[i] = c }
            return out
        }
        for (i, c) in cases.enumerated() {
            let want = try directGreedy(model, prompt: c.prompt_ids, count: count)
            #expect(results[i]?.tokens == want, "case \(i)")
            #expect(results[i]?.finish?.reason == .length)
            #expect(results[-1 - i]?.tokens == Array(want.prefix(1)), "the prefill side samples one token")
        }
        #expect(prefill.integrityFailure == nil)
        #expect(decode.integrityFailure == nil)
        #expect(await decode.flushCache())
        // The load figures are published after the flush's reply: give them a moment.
        for _ in 0..<100 where decode.load().usedTokens != 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(decode.load().usedTokens == 0)
        await decode.shutdown(drain: true)
        await prefill.shutdown(drain: true)
    }

    /// The nccl backend moves pages GPU to GPU: an engine whose pool is on the host refuses it
    /// at start-up, naming the fix, on either side of a pair.
    @Test(.enabled(if: TestModel.isPresent))
    func theNCCLBackendIsRefusedForAHostPool() throws {
        let model = try LlamaModel.load(gguf: TestModel.path, threads: 1)
        let tokenizer = try Tokenizer.load(modelPath: TestModel.path)
        for mode in [DisaggregationMode.prefill, .decode] {
            var c = EngineConfig()
            c.maxTotalTokens = 256
            c.disaggregation = DisaggregationConfig(mode: mode)
            c.disaggregation?.bootstrapPort = 0
            c.disaggregation?.backend = .nccl
            do {
                _ = try Engine(model: model, decoder: tokenizer, config: c)
                Issue.record("a \(mode) engine with a host pool started with the nccl backend")
            } catch EngineError.invalidConfig(let message) {
                #expect(message.contains("needs a CUDA KV pool"), "\(message)")
                #expect(message.contains("--disaggregation-transfer-backend tcp"), "\(message)")
            }
        }
    }
}
