import ServalCPU
import ServalTestSupport
import Testing

@testable import ServalTensor

/// `Logits.Storage.device`: rows a host never dereferences, copied home through the
/// backend's reader; the CPU backend keeps host storage, f16 KV and the host sampler.
@Suite struct DeviceLogitsTests {
    @Test func deviceRowsAreCopiedHomeOnlyThroughTheReader() {
        let rows = FakeDeviceRows(vocab: 4, rows: 2, hiddenSize: 3, hiddenBase: 100)
        let l = rows.device(rowStart: [0, 1, 2])
        #expect(l.hostRow(0) == nil)
        #expect(l.copy().logits == (0..<8).map(Float.init))
        #expect(l.hiddenRow(1) == [103, 104, 105])
        #expect(rows.reader.reads == 2)
    }

    @Test func allHiddenRowsComeHomeInOneRead() {
        let rows = FakeDeviceRows(vocab: 2, rows: 3, hiddenSize: 2, hiddenBase: 10)
        #expect(rows.device(rowStart: [0, 2, 3]).hiddenRows() == [10, 11, 12, 13, 14, 15])
        #expect(rows.reader.reads == 1)
        let onHost = Logits(
            vocabSize: 2, rowStart: [0, 2, 3], storage: .host(rows.logits), hidden: rows.hidden, hiddenSize: 2)
        #expect(onHost.hiddenRows() == [10, 11, 12, 13, 14, 15])
        #expect(Logits(vocabSize: 2, rowStart: [0, 3], storage: .host(rows.logits)).hiddenRows() == nil)
    }

    @Test func theCPUBackendKeepsHostLogitsF16KVAndTheHostSampler() {
        let cpu = CPUBackend(threads: 1)
        let p = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        defer { p.deallocate() }
        guard case .host(let q) = cpu.logitsStorage(p) else {
            Issue.record("CPU logits must stay in host memory")
            return
        }
        #expect(q == p)
        #expect(cpu.defaultKVType == .f16)
        #expect(cpu.makeSampler(vocabSize: 10) is CPUSampler)
        #expect(!cpu.memoryInfo().weightsResident)
    }
}
