import Foundation
import ServalEngine

/// Health, model/server info, load, cache and abort routes.
extension ServalAPI {
    func health() -> HTTPReply {
        isReady ? .empty(status: 200) : .error(.unavailable("The server is starting up (loading the model)."))
    }

    /// Runs a one-token generation through the engine: green only if the engine answers.
    func healthGenerate() async -> HTTPReply {
        guard isReady else { return .error(.unavailable("The server is starting up (loading the model).")) }
        var s = SamplingParams()
        s.maxNewTokens = 1
        s.temperature = 0
        s.ignoreEOS = true
        let req = GenerateRequest(rid: "health-" + Self.newID(), inputIDs: [0], sampling: s)
        var ok = false
        for await ev in engine.submit(req) {
            if case .finished(let info) = ev, case .abort = info.reason {} else if case .finished = ev { ok = true }
        }
        return ok ? .empty(status: 200) : .error(.unavailable("The engine did not complete a health-check generation."))
    }

    func models() -> HTTPReply {
        .ok(["object": "list", "data": [modelCard]])
    }

    /// `GET /v1/models/{id}`; the id may be the served name or the model path, slashes and all.
    func modelByID(_ id: String) throws -> HTTPReply {
        let decoded = id.removingPercentEncoding ?? id
        // An absolute path loses its leading '/' to the route's own: accept it either way.
        let paths = [config.modelPath, String(config.modelPath.drop { $0 == "/" })]
        guard decoded == config.servedModelName || paths.contains(decoded) else {
            throw APIError(
                status: 404, message: "The model '\(id)' does not exist.", type: "invalid_request_error",
                param: "model", code: "model_not_found")
        }
        return .ok(modelCard)
    }

    var modelCard: JSONValue {
        [
            "id": .string(config.servedModelName), "object": "model",
            "created": .int(Int(startedAt.timeIntervalSince1970)),
            "owned_by": "serval", "root": .string(config.servedModelName), "max_model_len": .int(engine.contextLength),
        ]
    }

    func modelInfo() -> HTTPReply {
        let m = engine.modelInfo
        return .ok([
            "model_path": .string(config.modelPath), "tokenizer_path": .string(config.tokenizerPath),
            "is_generation": true, "preferred_sampling_params": nil, "weight_version": "default",
            "has_image_understanding": false, "has_audio_understanding": false,
            "model_type": .string(m.architecture), "architectures": [.string(m.architecture)],
            "name": .string(m.name), "context_length": .int(engine.contextLength), "vocab_size": .int(m.vocabSize),
            "hidden_size": .int(m.hiddenSize), "num_hidden_layers": .int(m.layerCount),
            "num_attention_heads": .int(m.headCount), "num_key_value_heads": .int(m.kvHeadCount),
            "head_dim": .int(m.headDim), "parameter_count": .int(m.parameterCount), "weight_bytes": .int(m.weightBytes),
            "weight_types": .string(m.weightTypes), "kv_layout": .string(m.kvLayout),
            "kv_bytes_per_token": .int(m.kvBytesPerToken),
        ])
    }

    func serverInfo() -> HTTPReply {
        var o = config.serverArgs
        let load = engine.load()
        let stats = engine.stats()
        o["version"] = .string(ServalVersion.string)
        o["max_total_num_tokens"] = .int(load.totalTokens)
        o["internal_states"] = [
            [
                "last_gen_throughput": .double(stats.genThroughput), "cache_hit_rate": .double(stats.cacheHitRate),
                "num_retractions_total": .int(stats.retractionsTotal),
            ]
        ]
        return .ok(.object(o))
    }

    /// One entry per data-parallel rank, as SGLang reports it (we have one rank).
    func getLoad() -> HTTPReply {
        let l = engine.load()
        return .ok([
            [
                "dp_rank": 0, "num_reqs": .int(l.runningRequests + l.queuedRequests),
                "num_running_reqs": .int(l.runningRequests), "num_waiting_reqs": .int(l.queuedRequests),
                "num_tokens": .int(l.usedTokens), "max_total_num_tokens": .int(l.totalTokens),
                "token_usage": .double(l.tokenUsage),
            ]
        ])
    }

    func prometheus() async throws -> HTTPReply {
        guard config.enableMetrics else { throw APIError.notFound("/metrics (start the server with --enable-metrics)") }
        let h = metrics.snapshot()
        let stats = engine.stats()
        // The engine's own TTFT / inter-token figures when it measures them.
        let text =
            PrometheusRenderer.render(
                modelName: config.servedModelName, load: engine.load(), stats: stats,
                ttft: stats.timeToFirstToken ?? h.ttft, itl: stats.interTokenLatency ?? h.itl,
                e2e: h.e2e) + (await expertMetrics())
        return .text(status: 200, text, contentType: "text/plain; version=0.0.4; charset=utf-8")
    }

    func flushCache() async -> HTTPReply {
        if await engine.flushCache() {
            return .text(
                status: 200,
                "Cache flushed.\nPlease check backend logs for more details. (When there are running or waiting requests, the operation will not be performed.)\n",
                contentType: "text/plain; charset=utf-8")
        }
        return .text(
            status: 400, "Cache not flushed: requests are running or waiting. Retry when the server is idle.\n",
            contentType: "text/plain; charset=utf-8")
    }

    /// `{"rid": "..."}` aborts that request (all its choices); `{"abort_all": true}` aborts everything.
    func abortRequest(_ body: JSONValue) throws -> HTTPReply {
        let f = try RequestFields(body)
        if try f.bool("abort_all") == true {
            for r in state.allRids() { engine.abort(rid: r) }
            return .empty(status: 200)
        }
        guard let rid = try f.string("rid") else {
            throw APIError.invalid(
                "Send 'rid' (or 'abort_all': true).", param: "rid", code: "missing_required_parameter")
        }
        let targets = state.rids(for: rid) ?? [rid]
        for r in targets { engine.abort(rid: r) }
        return .empty(status: 200)
    }
}

public enum ServalVersion {
    public static let string = "0.1.0"
}
