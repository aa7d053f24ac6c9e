import Foundation
import ServalModels

/// How many KV token slots the engine allocates.
enum KVPoolSizing {
    /// CPU cap: beyond this many slots a CPU backend is compute bound long before it
    /// is memory bound, and every slot costs real RAM once touched.
    static let cpuSlotCap = 1 << 16

    /// `maxTotalTokens` when given; else `memFractionStatic` of physical memory minus
    /// the weights, over the bytes one slot takes, capped at `cpuSlotCap` and at
    /// 16 full-length contexts, and at least one full context (so any request that
    /// passes validation can run).
    static func capacity(
        config: EngineConfig, kvBytesPerToken: Int, weightBytes: Int, contextLength: Int,
        physicalMemory: UInt64 = ProcessInfo.processInfo.physicalMemory, deviceFreeBytes: Int? = nil
    ) throws -> Int {
        if let fixed = config.maxTotalTokens {
            guard fixed >= 1 else {
                throw EngineError.invalidConfig("--max-total-tokens must be positive, got \(fixed)")
            }
            return fixed
        }
        guard config.memFractionStatic > 0, config.memFractionStatic <= 1 else {
            throw EngineError.invalidConfig("--mem-fraction-static must be in (0, 1], got \(config.memFractionStatic)")
        }
        guard kvBytesPerToken > 0 else {
            throw EngineError.invalidConfig("model reports \(kvBytesPerToken) KV bytes per token")
        }
        if let free = deviceFreeBytes {
            // A device with the weights already in its memory: like SGLang, weights and
            // KV together take `memFractionStatic` of the total; the rest stays free for
            // activations, workspaces and the sampler.
            let budget = Double(free) - Double(physicalMemory) * (1 - config.memFractionStatic)
            guard budget > Double(kvBytesPerToken) * Double(contextLength) else {
                throw EngineError.invalidConfig(
                    "device memory left for the KV pool, \(Int(max(0, budget) / 1_048_576)) MiB (\(free / 1_048_576) MiB free "
                        + "of \(physicalMemory / 1_048_576), --mem-fraction-static \(config.memFractionStatic)), cannot hold "
                        + "one \(contextLength)-token context; raise --mem-fraction-static, lower --context-length "
                        + "or set --max-total-tokens")
            }
            return Int(budget / Double(kvBytesPerToken))
        }
        let budget = Double(physicalMemory) * config.memFractionStatic - Double(weightBytes)
        guard budget > Double(kvBytesPerToken) * Double(contextLength) else {
            throw EngineError.invalidConfig(
                "memory budget \(Int(budget / 1_048_576)) MiB (--mem-fraction-static \(config.memFractionStatic)) "
                    + "cannot hold one \(contextLength)-token context; lower --context-length or set --max-total-tokens"
            )
        }
        let fromMemory = Int(budget / Double(kvBytesPerToken))
        return min(fromMemory, max(contextLength, min(cpuSlotCap, 16 * contextLength)))
    }
}
