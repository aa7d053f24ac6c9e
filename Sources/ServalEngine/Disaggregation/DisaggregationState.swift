import Foundation
import Logging
import ServalModels
import ServalTensor

/// The engine-thread side of prefill-decode disaggregation: which rooms this prefill server
/// fills and how far, which fetches this decode server waits on, and the copies between
/// the KV pool and the transfer (`KVTransfer`). The engine calls it at four points: accept,
/// after a forward pass, on a transfer event, and when a request ends.
final class DisaggregationState {
    let config: DisaggregationConfig
    private let transfer: any KVTransfer
    private let pool: any KVPageCopying
    /// The pool's device page path (`nccl`): pages go out as device staging, not host bytes.
    private let devicePool: (any KVDevicePageMoving)?
    /// Prefill side: each request's room and how many prompt positions went into it.
    private var rooms: [ObjectIdentifier: (channel: any KVSendChannel, sent: Int)] = [:]
    /// Prefill side: each request's sampled first token, with its logprobs.
    private var firstTokens: [ObjectIdentifier: SampledToken] = [:]
    /// Decode side: where each queued request's KV comes from.
    private var sources: [ObjectIdentifier: BootstrapInfo] = [:]
    /// Decode side: fetches in flight by request serial.
    private var fetches: [Int: (request: Request, fetch: any KVFetch)] = [:]

    var mode: DisaggregationMode { config.mode }
    /// Prefill side: the port the bootstrap listener is bound to (`bootstrapPort` 0 picks one).
    private(set) var boundPort: Int?

    /// nil for a plain server. Throws when the KV pool cannot be copied by the host or the
    /// bootstrap port cannot be bound. Under tensor parallelism (`model` a
    /// `TensorParallelLeader`) every rank's shard moves: rank 0 gathers and scatters them.
    static func make(
        config: DisaggregationConfig?, model: any LanguageModel, kvCache: any KVCacheStorage, logger: Logger
    ) throws -> DisaggregationState? {
        guard let config, config.mode != .null else { return nil }
        guard let cache = kvCache as? ModelKVCache, let local = cache.pool as? any KVPageCopying else {
            throw EngineError.invalidConfig(
                "--disaggregation-mode \(config.mode.rawValue) needs a KV pool the host can copy (the CPU or CUDA backend); this server's pool cannot be transferred"
            )
        }
        guard config.timeout > 0 else {
            throw EngineError.invalidConfig("--disaggregation-decode-timeout must be positive, got \(config.timeout)")
        }
        var pool: any KVPageCopying = local
        var tpSize = 1
        if let leader = model as? TensorParallelLeader {
            pool = try TensorParallelKVPages(leader: leader, local: local)
            tpSize = leader.communicator.size
        }
        var devicePool: (any KVDevicePageMoving)?
        var links: (any KVPeerLinkMaking)?
        if config.backend == .nccl {
            guard tpSize == 1 else {
                throw EngineError.invalidConfig(
                    "--disaggregation-transfer-backend nccl with --tp-size > 1 is not available yet (each rank's shard would need its own link); use tcp"
                )
            }
            guard let device = local as? any KVDevicePageMoving else {
                throw EngineError.invalidConfig(
                    "--disaggregation-transfer-backend nccl moves KV pages GPU to GPU and needs a CUDA KV pool (--device cuda); this server's pool is on the host: use --disaggregation-transfer-backend tcp"
                )
            }
            do { links = try device.peerLinks() } catch {
                throw EngineError.invalidConfig("--disaggregation-transfer-backend nccl: \(error)")
            }
            devicePool = device
        }
        let transfer = TCPKVTransfer(
            slotByteCount: pool.slotByteCount, signature: pool.pageFormatSignature, tpSize: tpSize,
            timeout: config.timeout, logger: logger, peerLinks: links)
        let state = DisaggregationState(config: config, transfer: transfer, pool: pool, devicePool: devicePool)
        if config.mode == .prefill {
            state.boundPort = try transfer.listen(host: config.bootstrapHost, port: config.bootstrapPort)
        }
        return state
    }

    private init(
        config: DisaggregationConfig, transfer: any KVTransfer, pool: any KVPageCopying,
        devicePool: (any KVDevicePageMoving)?
    ) {
        self.config = config
        self.transfer = transfer
        self.pool = pool
        self.devicePool = devicePool
    }

    /// Most bytes one device page message stages (a long chunk goes as several).
    static let maxDevicePageBytes = 32 << 20

    deinit { transfer.shutdown() }

    /// What a disaggregated server cannot serve, named for a 400.
    func validate(_ request: GenerateRequest) throws {
        guard request.bootstrap != nil else {
            throw EngineError.invalidRequest(
                "this server runs with --disaggregation-mode \(mode.rawValue): a request needs bootstrap_host, bootstrap_port and bootstrap_room (send it through `serval launch-router --pd-disaggregation`)"
            )
        }
        let p = request.sampling
        let unsupported: [(Bool, String)] = [
            // Only the last prompt position (which has no value: SGLang's default) needs no prompt rows.
            ((p.inputLogprobStart ?? Int.max) < request.inputIDs.count - 1, "prompt logprobs (logprob_start_len)"),
            (p.returnHiddenStates, "return_hidden_states"), (p.returnSamplingMask, "return_sampling_mask"),
        ]
        for (asked, name) in unsupported where asked {
            throw EngineError.invalidRequest("\(name) is not supported with prefill-decode disaggregation yet")
        }
    }

    // MARK: Prefill side

    /// Opens the request's room (prefill side; nil on a decode server). Throws when the
    /// room is in use.
    func openRoom(for request: GenerateRequest) throws -> (any KVSendChannel)? {
        guard mode == .prefill, let b = request.bootstrap else { return nil }
        do {
            return try transfer.openRoom(b.room, promptLength: request.inputIDs.count)
        } catch {
            throw EngineError.invalidRequest("\(error)")
        }
    }

    func register(_ r: Request, channel: any KVSendChannel) {
        rooms[ObjectIdentifier(r)] = (channel, 0)
    }

    /// After a forward pass: the prompt positions now computed (cached prefixes included)
    /// go to their rooms.
    func exportPages(after batch: ScheduledBatch) {
        guard !rooms.isEmpty else { return }
        for s in batch.sequences {
            let id = ObjectIdentifier(s.request)
            guard let entry = rooms[id] else { continue }
            let end = min(s.start + s.count, s.request.promptLength)
            guard end > entry.sent else { continue }
            let slots = s.request.slots[entry.sent..<end]
            let size = slots.count * pool.slotByteCount
            do {
                if let devicePool {
                    let step = max(1, Self.maxDevicePageBytes / max(1, pool.slotByteCount))
                    for from in stride(from: slots.startIndex, to: slots.endIndex, by: step) {
                        let part = slots[from..<min(from + step, slots.endIndex)]
                        let pages = try devicePool.gatherPages(slots: part)
                        entry.channel.send(start: from, count: part.count, pages: pages)
                    }
                } else {
                    let bytes = try [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                        count = 0
                        try pool.copyOut(slots: slots, into: UnsafeMutableRawPointer(buffer.baseAddress!))
                        count = size
                    }
                    entry.channel.send(start: entry.sent, count: slots.count, bytes: bytes)
                }
                rooms[id] = (entry.channel, end)
            } catch {
                // The decode side gets the failure; the prompt itself ends as usual here.
                entry.channel.fail("copying the prompt's KV out of the pool failed: \(error)")
                rooms[id] = nil
                firstTokens[id] = nil
            }
        }
    }

    /// Prefill side: remembers what was sampled (the token and its logprobs) for the room.
    func sampled(_ r: Request, _ token: SampledToken) {
        let id = ObjectIdentifier(r)
        if rooms[id] != nil, firstTokens[id] == nil { firstTokens[id] = token }
    }

    // MARK: Decode side

    func register(_ r: Request, source: BootstrapInfo) {
        sources[ObjectIdentifier(r)] = source
    }

    /// Starts fetching the prompts that just got their slots; events come back through `post`.
    func startFetches(_ admitted: [Request], post: @escaping @Sendable (Int, KVTransferEvent) -> Void) {
        for r in admitted {
            guard let source = sources.removeValue(forKey: ObjectIdentifier(r)) else { continue }
            let serial = r.serial
            let fetch = transfer.fetch(
                from: source, skip: r.kvLength, promptLength: r.promptLength,
                deadline: Date().addingTimeInterval(config.timeout)
            ) { event in post(serial, event) }
            fetches[serial] = (r, fetch)
        }
    }

    /// What a transfer event means for the engine.
    enum Arrival {
        /// Pages stored; nothing to do.
        case stored
        case complete(Request, first: SampledToken)
        case failed(Request, String)
    }

    /// Stores arriving pages into the request's slots; nil for a request that already ended.
    func receive(serial: Int, _ event: KVTransferEvent) -> Arrival? {
        guard let entry = fetches[serial] else { return nil }
        let r = entry.request, fetch = entry.fetch
        switch event {
        case .pages(let start, let count, let bytes):
            guard start >= r.cachedLength, start + count <= r.promptLength, r.slots.count >= start + count,
                bytes.count == count * pool.slotByteCount
            else {
                fetch.cancel()
                fetches[serial] = nil
                return .failed(r, "KV pages for positions \(start)..<\(start + count) do not fit the reserved slots")
            }
            do {
                try bytes.withUnsafeBytes {
                    try pool.copyIn(slots: r.slots[start..<(start + count)], from: $0.baseAddress!)
                }
            } catch {
                fetch.cancel()
                fetches[serial] = nil
                return .failed(r, "copying the prompt's KV into the pool failed: \(error)")
            }
            return .stored
        case .devicePages(let start, let count, let pages):
            guard let devicePool, start >= r.cachedLength, start + count <= r.promptLength,
                r.slots.count >= start + count, pages.slotCount == count
            else {
                fetch.cancel()
                fetches[serial] = nil
                return .failed(r, "KV pages for positions \(start)..<\(start + count) do not fit the reserved slots")
            }
            do {
                try devicePool.scatterPages(pages, into: r.slots[start..<(start + count)])
            } catch {
                fetch.cancel()
                fetches[serial] = nil
                return .failed(r, "copying the prompt's KV into the pool failed: \(error)")
            }
            return .stored
        case .done(let first):
            fetches[serial] = nil
            return .complete(r, first: first)
        case .failed(let message):
            fetches[serial] = nil
            return .failed(r, message)
        }
    }

    // MARK: Both

    /// A request ended for any reason: its room gets the first token or the failure;
    /// its fetch, if any, stops (the scheduler frees the slots).
    func ended(_ r: Request, reason: FinishReason) {
        let id = ObjectIdentifier(r)
        sources[id] = nil
        if let f = fetches.removeValue(forKey: r.serial) { f.fetch.cancel() }
        let sampled = firstTokens.removeValue(forKey: id)
        guard let entry = rooms.removeValue(forKey: id) else { return }
        if case .abort(let message) = reason {
            entry.channel.fail(message)
        } else if entry.sent == r.promptLength, let first = r.outputTokens.first {
            var token = sampled ?? SampledToken(tokenID: first)
            token.tokenID = first
            token.logprob?.tokenID = first
            token.support = nil
            entry.channel.finish(first: token)
        } else {
            entry.channel.fail("the prompt ended before its KV was computed")
        }
    }
}
