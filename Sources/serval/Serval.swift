import ArgumentParser
import Foundation

struct Serval: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serval",
        abstract: "Serval: a fast LLM serving system (engine, OpenAI-compatible server, gateway).",
        subcommands: [
            Generate.self,
            BenchOneBatch.self,
            LaunchServer.self,
            LaunchRouter.self,
            BenchServing.self,
            BenchKernels.self,
            BenchGrammar.self,
            CudaInfo.self, Selftest.self, BenchCuda.self,
            BenchAllReduce.self,
            BenchKVTransfer.self,
        ]
    )
}
