import ArgumentParser

struct BenchServing: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-serving", abstract: "Benchmarks a running server.")

    func run() async throws {
        throw ValidationError("bench-serving is not built yet")
    }
}
