import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1
import ServalHTTP

/// Worker management (`/workers`, SGLang's older `/add_worker`, `/remove_worker`,
/// `/list_workers`) and the fan-out routes (`/get_loads`, `/flush_cache`).
struct AdminRoutes: Sendable {
    let gateway: Gateway

    func describe(_ w: Worker) -> JSONValue {
        var o: JSONValue = [
            "id": .string(w.id), "url": .string(w.url), "worker_type": .string(workerType(w)),
            "is_healthy": .bool(w.health == .healthy), "health": .string(w.health.rawValue),
            "circuit_state": .string(w.breaker.state.rawValue), "draining": .bool(w.isDraining),
            "load": .int(w.load), "routed": .int(w.routed.load(ordering: .relaxed)),
            "failures": .int(w.failures.load(ordering: .relaxed)), "connection_mode": "Http",
        ]
        if let pd = gateway.pd, pd.isPrefill(w), case .object(var obj) = o {
            obj["bootstrap_port"] = .int(pd.bootstrap(of: w).port)
            o = .object(obj)
        }
        if let kv = gateway.kvIndex, case .object(var obj) = o {
            // --kv-events: whether its stream is live, and the blocks it reported holding.
            let blocks = kv.cachedBlocks(w.url)
            obj["kv_events"] = .bool(blocks != nil)
            obj["kv_cached_blocks"] = blocks.map { .int($0) } ?? .null
            o = .object(obj)
        }
        return o
    }

    /// SMG's worker types: `prefill` / `decode` in PD mode, else `regular`.
    func workerType(_ w: Worker) -> String {
        guard let pd = gateway.pd else { return "regular" }
        return pd.isPrefill(w) ? "prefill" : pd.isDecode(w) ? "decode" : "regular"
    }

    func listWorkers() -> Response {
        let all = gateway.registry.all
        let types = all.map(workerType)
        func count(_ t: String) -> JSONValue { .int(types.filter { $0 == t }.count) }
        return GatewayResponses.json([
            "workers": .array(all.map(describe)), "total": .int(all.count),
            "stats": [
                "prefill_count": count("prefill"), "decode_count": count("decode"), "regular_count": count("regular"),
            ],
        ])
    }

    func getWorker(_ id: String) -> Response {
        guard let w = gateway.registry.find(id: id) else {
            return GatewayResponses.error(.notFound("no worker with id '\(id)'"))
        }
        return GatewayResponses.json(describe(w))
    }

    /// `POST /workers {"url": ...}`: 202 with the id and location; traffic starts after a
    /// health check passes.
    func postWorker(body: ByteBuffer) -> Response {
        let json: JSONValue
        do { json = try JSONParser.parse(body.readableBytesView) } catch {
            return GatewayResponses.error(
                .badRequest("body must be JSON like {\"url\": \"http://host:port\"}: \(error)"))
        }
        guard case .object = json else { return GatewayResponses.error(.badRequest("body must be a JSON object")) }
        guard case .string(let url)? = json["url"] else {
            return GatewayResponses.error(.badRequest("'url' (a string like http://host:port) is required"))
        }
        if let t = json["worker_type"], t != "regular" {
            return GatewayResponses.error(.badRequest("only worker_type 'regular' is supported"))
        }
        do {
            let w = try gateway.addWorker(url: url)
            var h = HTTPFields()
            h[.location] = "/workers/\(w.id)"
            return GatewayResponses.json(
                [
                    "id": .string(w.id), "url": .string(w.url), "status": "pending",
                    "location": .string("/workers/\(w.id)"),
                    "message": "Worker registration queued; it gets traffic once healthy.",
                ],
                status: 202, headers: h)
        } catch let e as GatewayError {
            return GatewayResponses.error(e)
        } catch {
            return GatewayResponses.error(.badRequest("\(error)"))
        }
    }

    func deleteWorker(_ id: String) -> Response {
        guard let w = gateway.registry.find(id: id) else {
            return GatewayResponses.error(.notFound("no worker with id '\(id)'"))
        }
        gateway.removeWorker(w)
        return GatewayResponses.json(["id": .string(w.id), "url": .string(w.url), "status": "draining"], status: 202)
    }

    /// SGLang's `POST /add_worker?url=`: answers once the worker is healthy.
    func addWorkerLegacy(url: String?) async -> Response {
        guard let url, !url.isEmpty else {
            return GatewayResponses.error(.badRequest("query parameter 'url' is required"))
        }
        do {
            let w = try gateway.addWorker(url: url)
            if await gateway.waitHealthy(w, timeout: gateway.config.workerStartupTimeoutSecs) {
                return GatewayResponses.text("Successfully added worker: \(w.url)")
            }
            gateway.removeWorker(w)
            return GatewayResponses.error(
                .unavailable(
                    "worker \(w.url) did not pass a health check within \(gateway.config.workerStartupTimeoutSecs)s"))
        } catch let e as GatewayError {
            return GatewayResponses.error(e)
        } catch {
            return GatewayResponses.error(.badRequest("\(error)"))
        }
    }

    func removeWorkerLegacy(url: String?) -> Response {
        guard let url, !url.isEmpty else {
            return GatewayResponses.error(.badRequest("query parameter 'url' is required"))
        }
        if let e = (Result { try WorkerURL.normalise(url) }).failureValue { return GatewayResponses.error(e) }
        guard let w = gateway.registry.find(url: url) else {
            return GatewayResponses.error(.notFound("no worker with url '\(url)'"))
        }
        gateway.removeWorker(w)
        return GatewayResponses.text("Successfully removed worker: \(w.url)")
    }

    func listWorkersLegacy() -> Response {
        GatewayResponses.json(["urls": .array(gateway.registry.all.map { .string($0.url) })])
    }

    /// `GET /get_loads`: each worker's own `/get_load` answer next to the router's in-flight count.
    func getLoads() async -> Response {
        let results = await fanOut(method: .GET, path: "/get_load")
        return GatewayResponses.json([
            "workers": .array(
                results.map { w, status, body in
                    [
                        "worker": .string(w.url), "id": .string(w.id), "in_flight": .int(w.load),
                        "load": body.flatMap { try? JSONParser.parse($0.readableBytesView) } ?? .null,
                        "status": .int(status),
                    ]
                })
        ])
    }

    /// `POST /flush_cache` on every worker: 200 when all succeed, else 502 with each result.
    func flushCache() async -> Response {
        let results = await fanOut(method: .POST, path: "/flush_cache")
        let ok = results.allSatisfy { (200..<300).contains($0.1) }
        return GatewayResponses.json(
            [
                "success": .bool(ok),
                "workers": .array(
                    results.map { w, status, _ in
                        ["worker": .string(w.url), "status": .int(status)]
                    }),
            ], status: ok ? 200 : 502)
    }

    private func fanOut(method: HTTPMethod, path: String) async -> [(Worker, Int, ByteBuffer?)] {
        let workers = gateway.registry.all.filter { !$0.isDraining }
        let client = gateway.client
        let timeout = gateway.config.health.timeoutSecs
        return await withTaskGroup(of: (Int, Int, ByteBuffer?).self) { group in
            for (i, w) in workers.enumerated() {
                group.addTask {
                    var req = HTTPClientRequest(url: w.url + path)
                    req.method = method
                    if let key = gateway.config.apiKey {
                        req.headers.add(name: "Authorization", value: "Bearer \(key)")
                    }
                    do {
                        let resp = try await client.execute(req, timeout: .milliseconds(Int64(max(timeout, 5) * 1000)))
                        let body = try await resp.body.collect(upTo: 16 << 20)
                        return (i, Int(resp.status.code), body)
                    } catch {
                        return (i, 502, nil)
                    }
                }
            }
            var out = [(Worker, Int, ByteBuffer?)]()
            for await (i, status, body) in group { out.append((workers[i], status, body)) }
            return out.sorted { $0.0.id < $1.0.id }
        }
    }
}

extension Result where Failure == any Error {
    var failureValue: GatewayError? {
        if case .failure(let e) = self { return e as? GatewayError ?? .badRequest("\(e)") }
        return nil
    }
}
