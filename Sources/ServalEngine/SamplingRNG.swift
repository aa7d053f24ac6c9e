import ServalTensor

/// A request's own random stream.
///
/// Each request owns one and draws exactly one number per sampled token, so a
/// seeded request produces the same tokens whatever else shares its batch.
public typealias SamplingRNG = SeededGenerator
