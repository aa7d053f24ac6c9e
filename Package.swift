// swift-tools-version:6.0
import PackageDescription

// Targets are the architecture; each imports only the ones below it:
//   ServalBase      (seeded and counter-based RNGs; no compute code, so clients link it freely)
//   ServalGrammar   (regex / EBNF / JSON schema → byte-level pushdown automata, token masks)
//   CServalKernels  (C SIMD kernels, runtime CPU dispatch)
//   ServalTensor    (dtypes, weight views, device-neutral protocols: ComputeBackend, AttentionBackend,
//                    KVLayout/KVPool, Communicator; logits and the sampling seam)
//   ServalCPU       (the CPU backend: C kernels' Swift side, thread pool, paged/cascade attention)
//   CServalCUDA     (dlopen shim: the CUDA driver / NVRTC / cuBLASLt calls we use; no link-time CUDA)
//   ServalCUDA      (CUDA device, memory, streams, NVRTC kernels, cuBLASLt, GPU sampler, selftest)
//   ServalFormats   (GGUF, safetensors, HF config files)
//   ServalModels    (layers, architectures, registry and the one loader; written over ServalTensor's
//                    protocols only: the backend is injected by whoever loads a model)
//   ServalTokenizer (BPE / SentencePiece tokenizers, streaming detokenizer)
//   ServalTemplate  (Jinja-subset chat templates)
//   ServalEngine    (requests, scheduler, radix cache, KV allocator, sampler, engine loop)
//   ServalHTTP      (JSON value + parser, SSE framing and parsing, API errors, Prometheus text; no engine code)
//   ServalGateway   (the model gateway: routing policies, workers, reliability; links no engine code)
//   ServalServer    (OpenAI + SGLang HTTP API, SSE, metrics)
//   ServalBench     (bench-serving client)
//   serval          (the CLI, one file per subcommand)

let fast: [SwiftSetting] = [
    .swiftLanguageMode(.v5),
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
]
let plain: [SwiftSetting] = [.swiftLanguageMode(.v5)]
// The engine's bookkeeping (KV accounting, scheduler invariants) keeps its preconditions in
// the binary users run: plain -O, never -Ounchecked.
let checked: [SwiftSetting] = [
    .swiftLanguageMode(.v5),
    .unsafeFlags(["-wmo"], .when(configuration: .release)),
]

let package = Package(
    name: "serval",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "serval", targets: ["serval"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.70.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    ],
    targets: [
        .target(
            name: "CServalKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-Wall"])]
        ),
        .target(name: "ServalBase", swiftSettings: fast),
        .target(name: "ServalGrammar", swiftSettings: fast),
        .target(name: "ServalTensor", dependencies: ["ServalBase"], swiftSettings: fast),
        .target(
            name: "ServalCPU", dependencies: ["ServalBase", "ServalTensor", "CServalKernels"], swiftSettings: fast),
        .target(name: "ServalFormats", dependencies: ["ServalTensor"], swiftSettings: fast),
        .target(
            name: "CServalCUDA",
            cSettings: [.unsafeFlags(["-O2", "-Wall"])],
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]
        ),
        .target(
            name: "ServalCUDA", dependencies: ["CServalCUDA", "CServalKernels", "ServalTensor", "ServalBase"],
            swiftSettings: plain),
        .target(name: "ServalModels", dependencies: ["ServalTensor", "ServalFormats"], swiftSettings: fast),
        .target(name: "ServalTokenizer", dependencies: ["ServalFormats"], swiftSettings: fast),
        .target(name: "ServalTemplate", swiftSettings: plain),
        .target(
            name: "ServalEngine",
            dependencies: [
                "ServalBase", "ServalTensor", "ServalModels", "ServalTokenizer", "ServalTemplate", "ServalGrammar",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Collections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: checked
        ),
        .target(name: "ServalHTTP", swiftSettings: plain),
        // The gateway links no model, kernel or engine code: HTTP plumbing and networking only.
        .target(
            name: "ServalGateway",
            dependencies: [
                "ServalHTTP", "ServalBase",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Collections", package: "swift-collections"),
            ],
            swiftSettings: plain
        ),
        .target(
            name: "ServalServer",
            dependencies: [
                "ServalHTTP", "ServalEngine", "ServalModels", "ServalTemplate", "ServalTokenizer", "ServalGrammar",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: plain
        ),
        .target(
            name: "ServalBench",
            dependencies: [
                "ServalHTTP", "ServalTokenizer", "ServalBase",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: plain
        ),
        .executableTarget(
            name: "serval",
            dependencies: [
                "ServalEngine", "ServalServer", "ServalGateway", "ServalBench", "ServalModels", "ServalTokenizer",
                "ServalTemplate", "ServalTensor", "ServalCPU", "ServalFormats", "ServalBase", "ServalGrammar",
                "ServalCUDA",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: plain
        ),
        // One test-support target: the GGUF writer, the default-model path, shared fixtures.
        .target(
            name: "ServalTestSupport", dependencies: ["ServalModels", "ServalCPU"], path: "Tests/ServalTestSupport",
            resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(
            name: "ServalTensorTests",
            dependencies: ["ServalTestSupport", "ServalTensor", "ServalCPU", "ServalFormats", "ServalBase"],
            resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(
            name: "ServalFormatsTests", dependencies: ["ServalFormats"], resources: [.copy("Fixtures")],
            swiftSettings: plain),
        .testTarget(
            name: "ServalModelsTests",
            dependencies: ["ServalTestSupport", "ServalModels", "ServalCPU", "ServalFormats", "ServalTokenizer"],
            resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(
            name: "ServalTokenizerTests", dependencies: ["ServalTestSupport", "ServalTokenizer", "ServalFormats"],
            resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(
            name: "ServalTemplateTests", dependencies: ["ServalTestSupport", "ServalTemplate"],
            resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalGrammarTests", dependencies: ["ServalGrammar"], swiftSettings: plain),
        .testTarget(
            name: "ServalCUDATests", dependencies: ["ServalCUDA", "ServalTensor", "ServalBase"], swiftSettings: plain),
        .testTarget(name: "ServalBaseTests", dependencies: ["ServalBase"], swiftSettings: plain),
        .testTarget(
            name: "ServalEngineTests",
            dependencies: [
                "ServalTestSupport", "ServalEngine", "ServalBase", "ServalTensor", "ServalCPU", "ServalModels",
                "ServalGrammar",
            ], resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(
            name: "ServalServerTests", dependencies: ["ServalTestSupport", "ServalServer", "ServalEngine"],
            resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalHTTPTests", dependencies: ["ServalHTTP"], swiftSettings: plain),
        .testTarget(
            name: "ServalGatewayTests",
            dependencies: [
                "ServalGateway", "ServalHTTP", "ServalBase", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // HTTPFields / HTTPRequest (re-exported from swift-http-types) for the fast path's framing tests
                .product(name: "Hummingbird", package: "hummingbird"),
            ], swiftSettings: plain),
        .testTarget(
            name: "ServalBenchTests", dependencies: ["ServalTestSupport", "ServalBench", "ServalBase"],
            resources: [.copy("Fixtures")], swiftSettings: plain),
    ]
)
