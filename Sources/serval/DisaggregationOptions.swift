import ArgumentParser
import ServalEngine

/// Prefill-decode disaggregation flags of `launch-server` (SGLang's names and defaults).
struct DisaggregationOptions: ParsableArguments {
    @Option(
        name: .customLong("disaggregation-mode"),
        help:
            "null (a plain server), prefill (runs prompts and serves their KV on --disaggregation-bootstrap-port) or decode (fetches each prompt's KV from the prefill server the request names, then decodes)."
    )
    var mode: String = "null"
    @Option(
        name: .customLong("disaggregation-transfer-backend"),
        help:
            "How KV moves between prefill and decode servers: tcp (host bytes over the bootstrap connection; CPU and CUDA servers) or nccl (--device cuda on both: control over TCP, pages GPU to GPU with NCCL send/recv)."
    )
    var transferBackend: String = "tcp"
    @Option(
        name: .customLong("disaggregation-bootstrap-port"),
        help: "Prefill server: port of the bootstrap listener decode servers fetch KV from (on --host).")
    var bootstrapPort: Int = 8998
    @Option(
        name: .customLong("disaggregation-decode-timeout"),
        help:
            "Seconds a KV transfer may take: decode side from reserving the slots to the last page, prefill side how long a finished prompt's KV waits to be fetched."
    )
    var timeout: Double = 300

    /// The engine's settings, nil for a plain server; the message names the flag to fix.
    /// `cpuDevice`: the server runs on the CPU, where `nccl` (GPU to GPU) cannot move its KV.
    func config(host: String, dpSize: Int, cpuDevice: Bool = false) throws -> DisaggregationConfig? {
        guard let m = DisaggregationMode(rawValue: mode) else {
            throw ValidationError("--disaggregation-mode must be null, prefill or decode; got '\(mode)'.")
        }
        let backend: KVTransferBackendKind
        switch transferBackend {
        case "tcp": backend = .tcp
        case "nccl": backend = .nccl
        case "mooncake", "nixl", "ascend", "fake":
            throw ValidationError(
                "--disaggregation-transfer-backend \(transferBackend) is SGLang's (RDMA / test backends) and not available in Serval; use tcp or nccl."
            )
        default:
            throw ValidationError("--disaggregation-transfer-backend must be tcp or nccl; got '\(transferBackend)'.")
        }
        guard m != .null else { return nil }
        if backend == .nccl && cpuDevice {
            throw ValidationError(
                "--disaggregation-transfer-backend nccl moves KV pages GPU to GPU and needs --device cuda on both servers; a --device cpu server moves them with tcp."
            )
        }
        guard (1...65535).contains(bootstrapPort) else {
            throw ValidationError("--disaggregation-bootstrap-port must be in 1...65535, got \(bootstrapPort).")
        }
        guard timeout > 0 else {
            throw ValidationError("--disaggregation-decode-timeout must be positive, got \(timeout).")
        }
        // Tensor-parallel ranks are fine (rank 0 gathers and scatters every rank's KV shard);
        // DP attention's groups (one pool per group) and plain DP replicas are not wired up.
        guard dpSize == 1 else {
            throw ValidationError(
                "--disaggregation-mode \(mode) with --dp-size > 1 (DP attention or data-parallel replicas) is not available yet; --tp-size ranks are. Drop --dp-size or the mode."
            )
        }
        var c = DisaggregationConfig(mode: m)
        c.backend = backend
        c.bootstrapHost = host == "0.0.0.0" || host.isEmpty ? "0.0.0.0" : host
        c.bootstrapPort = bootstrapPort
        c.timeout = timeout
        return c
    }
}
