import ArgumentParser
import Foundation
import ServalEngine
import ServalHTTP
import ServalModels

/// SGLang's expert load balancing and two-batch overlap flags of `launch-server`
/// (docs/eplb.md): EPLB's redundant experts, rebalance period and initial placement, and
/// TBO, for expert-parallel MoE.
struct ExpertOptions: ParsableArguments {
    @Flag(
        name: .customLong("enable-eplb"),
        help:
            "Expert load balancing: move experts (and replicate hot ones) by observed load every --eplb-rebalance-num-iterations forward passes (needs --ep-size > 1)."
    )
    var enableEPLB = false
    @Option(
        name: .customLong("ep-num-redundant-experts"),
        help:
            "Extra physical expert slots per MoE layer for replicas of hot experts (experts + this must divide by --ep-size)."
    )
    var redundantExperts: Int = 0
    @Option(
        name: .customLong("eplb-rebalance-num-iterations"),
        help: "Forward passes between two EPLB rebalances (with --enable-eplb).")
    var rebalanceIterations: Int = 1000
    @Option(
        name: .customLong("init-expert-location"),
        help:
            "Where the experts start: 'trivial' (every expert equally hot) or a JSON file from /dump_expert_distribution_record (its logical_count is placed by EPLB) or with a physical_to_logical_map."
    )
    var initExpertLocation: String = "trivial"
    @Flag(
        name: .customLong("enable-two-batch-overlap"),
        help:
            "Split each MoE layer's batch (32 tokens or more) in two micro-batches so one's combine overlaps the other's experts (needs --ep-size > 1)."
    )
    var twoBatchOverlap = false

    /// Checks the flags against the layout; a flag that cannot be honoured is refused.
    func validate(layout: ParallelLayout) throws {
        let ep = layout.epSize > 1
        let named: [(Bool, String)] = [
            (enableEPLB, "--enable-eplb"), (redundantExperts != 0, "--ep-num-redundant-experts"),
            (initExpertLocation != "trivial", "--init-expert-location"),
            (twoBatchOverlap, "--enable-two-batch-overlap"),
        ]
        if let (_, what) = named.first(where: { $0.0 }), !ep {
            throw ValidationError("\(what) needs expert parallelism: add --ep-size \(max(2, layout.tpSize)).")
        }
        // Under DP attention each group's engine steps on its own: the online rebalance (one
        // engine's pass count) and the micro-batch split are not wired there.
        for (on, what) in [(enableEPLB, "--enable-eplb"), (twoBatchOverlap, "--enable-two-batch-overlap")]
        where on && layout.enableDPAttention {
            throw ValidationError(
                "\(what) is not available with --enable-dp-attention (use plain --ep-size; redundant experts and --init-expert-location work with both)."
            )
        }
        guard redundantExperts >= 0 else {
            throw ValidationError("--ep-num-redundant-experts must be >= 0, got \(redundantExperts).")
        }
        guard rebalanceIterations >= 1 else {
            throw ValidationError("--eplb-rebalance-num-iterations must be at least 1, got \(rebalanceIterations).")
        }
    }

    /// The model-side layout fields: redundant slots, initial location, nodes.
    func apply(to m: inout ModelParallelism, layout: ParallelLayout) throws {
        m.redundantExperts = redundantExperts
        m.nodes = layout.nnodes
        m.initialExpertLocation = try initialLocation()
        m.twoBatchOverlap = twoBatchOverlap
    }

    func apply(to c: inout EngineConfig, layout: ParallelLayout) {
        c.eplbRebalanceIterations = enableEPLB ? rebalanceIterations : nil
        c.eplbNodes = layout.nnodes
    }

    /// `--init-expert-location`: nil for `trivial`, else the file's `physical_to_logical_map`
    /// (taken as is) or `logical_count` (placed by EPLB), as SGLang reads them.
    func initialLocation() throws -> InitialExpertLocation? {
        guard initExpertLocation != "trivial" else { return nil }
        let path = initExpertLocation
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("--init-expert-location: cannot read '\(path)' (give 'trivial' or a JSON file).")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(Array(data)) } catch {
            throw ValidationError("--init-expert-location: '\(path)' is not valid JSON: \(error)")
        }
        func table(_ key: String) throws -> [[Double]]? {
            guard let v = json[key] else { return nil }
            guard case .array(let rows) = v else {
                throw ValidationError("--init-expert-location: \(key) in '\(path)' must be a list of lists of numbers.")
            }
            return try rows.map { row -> [Double] in
                guard case .array(let cells) = row else {
                    throw ValidationError(
                        "--init-expert-location: \(key) in '\(path)' must be a list of lists of numbers.")
                }
                return try cells.map { cell -> Double in
                    switch cell {
                    case .int(let i): return Double(i)
                    case .double(let d) where d.isFinite: return d
                    default:
                        throw ValidationError(
                            "--init-expert-location: \(key) in '\(path)' holds a non-number (\(cell)).")
                    }
                }
            }
        }
        if let map = try table("physical_to_logical_map") {
            return .physicalToLogical(map.map { $0.map { Int($0) } })
        }
        if let counts = try table("logical_count") { return .logicalCount(counts) }
        throw ValidationError(
            "--init-expert-location: '\(path)' has neither logical_count nor physical_to_logical_map.")
    }
}
