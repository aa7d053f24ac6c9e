import ArgumentParser

struct LaunchServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "launch-server", abstract: "Starts the OpenAI-compatible server.")

    func run() async throws {
        throw ValidationError("launch-server is not built yet")
    }
}
