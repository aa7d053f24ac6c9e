import Foundation

/// The gateway's PD state: which registered workers prefill (and their bootstrap ports),
/// which decode, and a policy for each side (cache-aware on the prefill side pays: that is
/// where cached prefixes save work).
final class PDRouting: @unchecked Sendable {
    let prefillPolicy: any RoutingPolicy
    let decodePolicy: any RoutingPolicy
    /// Normalised URL → bootstrap port.
    private let prefillPorts: [String: Int]
    private let decodeURLs: Set<String>

    init(config: PDConfig, policy: PolicyName, policyConfig: PolicyConfig, seed: UInt64?) throws {
        try config.validate()
        var ports: [String: Int] = [:]
        for p in config.prefill {
            ports[try WorkerURL.normalise(p.url)] = p.bootstrapPort ?? PDConfig.defaultBootstrapPort
        }
        prefillPorts = ports
        decodeURLs = Set(try config.decode.map { try WorkerURL.normalise($0) })
        prefillPolicy = Policies.make(config.prefillPolicy ?? policy, config: policyConfig, seed: seed, kvIndex: nil)
        decodePolicy = Policies.make(
            config.decodePolicy ?? policy, config: policyConfig, seed: seed.map { $0 &+ 1 }, kvIndex: nil)
    }

    /// Every worker URL, prefill first.
    var allURLs: [String] { prefillPorts.keys.sorted() + decodeURLs.sorted() }

    func isPrefill(_ w: Worker) -> Bool { prefillPorts[w.url] != nil }
    func isDecode(_ w: Worker) -> Bool { decodeURLs.contains(w.url) }

    /// What the decode server connects to for `prefill`'s KV.
    func bootstrap(of prefill: Worker) -> (host: String, port: Int) {
        let host = URLComponents(string: prefill.url)?.host ?? "127.0.0.1"
        return (host, prefillPorts[prefill.url] ?? PDConfig.defaultBootstrapPort)
    }

    func maintain(now: Double) {
        prefillPolicy.maintain(now: now)
        decodePolicy.maintain(now: now)
    }
}
