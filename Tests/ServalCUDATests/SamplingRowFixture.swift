import ServalTensor

enum SamplingRowFixture {
    static func row(_ r: Int) -> SamplingRow { SamplingRow(logitsRow: r) }
}
