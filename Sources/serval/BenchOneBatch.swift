import ArgumentParser

struct BenchOneBatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-one-batch", abstract: "Times one static batch: prefill and decode throughput.")

    func run() async throws {
        throw ValidationError("bench-one-batch is not built yet")
    }
}
