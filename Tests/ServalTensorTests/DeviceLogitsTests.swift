import ServalCPU
import Testing

@testable import ServalTensor

/// `Logits.Storage.device`: rows a host never dereferences, copied home through the
/// backend's reader; the CPU backend keeps host storage, f16 KV and the host sampler.
@Suite struct DeviceLogitsTests {
    /// Pretends host memory is a device: counts what was copied home.
    final class FakeDevice: DeviceRowReader, @unchecked Sendable {
        var reads = 0
        func read(_ device: UnsafePointer<Float>, count: Int) -> [Float] {
            reads += 1
            return Array(UnsafeBufferPointer(start: device, count: count))
        }
    }

    @Test func deviceRowsAreCopiedHomeOnlyThroughTheReader() {
        let vocab = 4, rows = 2, hidden = 3
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: vocab * rows)
        let states = UnsafeMutablePointer<Float>.allocate(capacity: hidden * rows)
        defer {
            logits.deallocate()
            states.deallocate()
        }
        for i in 0..<(vocab * rows) { logits[i] = Float(i) }
        for i in 0..<(hidden * rows) { states[i] = Float(100 + i) }
        let device = FakeDevice()
        let l = Logits(
            vocabSize: vocab, rowStart: [0, 1, 2], storage: .device(logits, reader: device), hidden: states,
            hiddenSize: hidden)
        #expect(l.hostRow(0) == nil)
        #expect(l.copy().logits == (0..<8).map(Float.init))
        #expect(l.hiddenRow(1) == [103, 104, 105])
        #expect(device.reads == 2)
    }

    @Test func allHiddenRowsComeHomeInOneRead() {
        let vocab = 2, rows = 3, hidden = 2
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: vocab * rows)
        let states = UnsafeMutablePointer<Float>.allocate(capacity: hidden * rows)
        defer {
            logits.deallocate()
            states.deallocate()
        }
        for i in 0..<(hidden * rows) { states[i] = Float(10 + i) }
        let device = FakeDevice()
        let onDevice = Logits(
            vocabSize: vocab, rowStart: [0, 2, 3], storage: .device(logits, reader: device), hidden: states,
            hiddenSize: hidden)
        #expect(onDevice.hiddenRows() == [10, 11, 12, 13, 14, 15])
        #expect(device.reads == 1)
        let onHost = Logits(
            vocabSize: vocab, rowStart: [0, 2, 3], storage: .host(logits), hidden: states, hiddenSize: hidden)
        #expect(onHost.hiddenRows() == [10, 11, 12, 13, 14, 15])
        #expect(Logits(vocabSize: vocab, rowStart: [0, 3], storage: .host(logits)).hiddenRows() == nil)
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
