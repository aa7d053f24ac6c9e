/// Which communicator carries a CUDA tensor-parallel group's tensor collectives (the
/// layers' all-reduces and all-gathers); rank 0's control messages always stay on the
/// host communicator. `SERVAL_TP_COMMUNICATOR` = `auto` (the default), `nccl` or `host`.
public enum DeviceCollectives: String, Sendable, Equatable, CaseIterable {
    /// NCCL on device buffers, on the backend's stream: decode steps stay CUDA graphs.
    case nccl
    /// Device -> pinned host copy, the host communicator, host -> device copy
    /// (`HostStagedCommunicator`): works for ranks sharing a GPU; every collective waits
    /// for the GPU, so decode runs eagerly.
    case hostStaged = "host"

    /// The choice every rank makes alike. `requested`: the environment value (nil or empty:
    /// auto). `sharedGPU`: some GPU holds several ranks (on any node; ranks agree on it before
    /// calling). `ncclProblem`: why NCCL cannot be used on some rank, or nil.
    public static func choose(
        requested: String?, sharedGPU: String?, ncclProblem: String?
    ) throws(ParallelLayoutError) -> DeviceCollectives {
        let value = (requested ?? "").lowercased()
        switch value {
        case "", "auto":
            guard sharedGPU == nil else { return .hostStaged }
            if let ncclProblem {
                throw ParallelLayoutError(
                    "every tensor-parallel rank has a GPU of its own, so the collectives need NCCL, but \(ncclProblem); install NCCL (libnccl.so.2, or point SERVAL_NCCL_LIB_DIR at it) or set SERVAL_TP_COMMUNICATOR=host to run them through host memory (slower, decode without CUDA graphs)."
                )
            }
            return .nccl
        case "nccl":
            if let sharedGPU {
                throw ParallelLayoutError(
                    "SERVAL_TP_COMMUNICATOR=nccl: \(sharedGPU), and NCCL needs a GPU per rank; give each rank its own GPU (--base-gpu-id, --gpu-id-step, CUDA_VISIBLE_DEVICES) or unset it (ranks sharing a GPU use the host-staged communicator)."
                )
            }
            if let ncclProblem {
                throw ParallelLayoutError(
                    "SERVAL_TP_COMMUNICATOR=nccl, but \(ncclProblem); install NCCL (libnccl.so.2, or point SERVAL_NCCL_LIB_DIR at it) or unset it."
                )
            }
            return .nccl
        case "host":
            return .hostStaged
        default:
            throw ParallelLayoutError("SERVAL_TP_COMMUNICATOR must be auto, nccl or host; got '\(requested ?? "")'.")
        }
    }

    /// For the startup line.
    public var summary: String {
        switch self {
        case .nccl: return "NCCL collectives on each rank's stream (decode as CUDA graphs)"
        case .hostStaged:
            return "host-staged collectives (device -> pinned host -> shared memory -> device; decode runs eagerly)"
        }
    }
}
