import ArgumentParser

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Generates text offline from a prompt.")

    func run() async throws {
        throw ValidationError("generate is not built yet")
    }
}
