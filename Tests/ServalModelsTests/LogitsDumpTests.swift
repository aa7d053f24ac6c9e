import Foundation
import ServalCPU
import ServalTensor
import ServalTestSupport
import Testing
@testable import ServalModels

/// Bit-exact logits, recorded before the compute-backend refactor: a hash of every logit
/// the model returns for a fixed set of batches (several prompts alone and batched, a
/// chunked prefill, a shared-prefix cascade, 1 and 2 threads, each KV dtype, llama3 rope
/// scaling, tiny random models of each stored type and the default model).
///
/// Hashes depend on the kernel path (AVX2 and AVX-512 sum in different orders), so the
/// fixture holds one table per path; a path without a table is reported and skipped.
/// Re-record (only when a change is meant to alter numerics, and say so in the commit):
///   SERVAL_RECORD_LOGITS=1 swift test --filter LogitsDumpTests
@Suite(.serialized) struct LogitsDumpTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/logits-hashes.json")

    @Test func logitsAreBitIdenticalToTheRecordedOnes() throws {
        let path = KernelPath.active.description
        var stored: [String: [String: String]] = [:]
        if let data = try? Data(contentsOf: Self.fixture) {
            stored = try JSONDecoder().decode([String: [String: String]].self, from: data)
        }
        let table = try LogitsDumpCases.currentTable()
        if ProcessInfo.processInfo.environment["SERVAL_RECORD_LOGITS"] == "1" {
            stored[path] = table
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(stored).write(to: Self.fixture)
            print("recorded \(table.count) logits hashes for kernel path \(path) into \(Self.fixture.path)")
            return
        }
        guard let expected = stored[path] else {
            print("skipping logits hashes: the fixture has no table for kernel path \(path)")
            return
        }
        for (name, hash) in table.sorted(by: { $0.key < $1.key }) {
            guard let want = expected[name] else {
                if name.hasPrefix("default") { continue }  // recorded without the default model
                Issue.record("\(name): no recorded hash")
                continue
            }
            #expect(hash == want, "\(name): logits differ from the recorded ones")
        }
        // The default model's cases must have been checked whenever it is present.
        if TestModel.isPresent { #expect(expected.keys.contains { $0.hasPrefix("default") }) }
    }
}
