// swift-tools-version:6.0
import PackageDescription

// Targets are the architecture; each imports only the ones below it:
//   ServalBase      (seeded and counter-based RNGs; no compute code, so clients link it freely)
//   CServalKernels  (C SIMD kernels, runtime CPU dispatch)
//   ServalTensor    (dtypes, tensors, CPU backend, thread pool)
//   CServalCUDA     (dlopen shim: the CUDA driver / NVRTC / cuBLASLt calls we use; no link-time CUDA)
//   ServalCUDA      (CUDA device, memory, streams, NVRTC kernels, cuBLASLt, GPU sampler, selftest)
//   ServalFormats   (GGUF, safetensors, HF config files)
//   ServalModels    (architectures: Llama family; KV cache storage; forward pass)
//   ServalTokenizer (BPE / SentencePiece tokenizers, streaming detokenizer)
//   ServalTemplate  (Jinja-subset chat templates)
//   ServalEngine    (requests, scheduler, radix cache, KV allocator, sampler, engine loop)
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
        .executable(name: "serval", targets: ["serval"]),
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
        .target(name: "ServalTensor", dependencies: ["ServalBase", "CServalKernels"], swiftSettings: fast),
        .target(name: "ServalFormats", dependencies: ["ServalTensor"], swiftSettings: fast),
        .target(
            name: "CServalCUDA",
            cSettings: [.unsafeFlags(["-O2", "-Wall"])],
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]
        ),
        .target(name: "ServalCUDA", dependencies: ["CServalCUDA", "ServalTensor", "ServalBase"], swiftSettings: plain),
        .target(name: "ServalModels", dependencies: ["ServalTensor", "ServalFormats"], swiftSettings: fast),
        .target(name: "ServalTokenizer", dependencies: ["ServalFormats"], swiftSettings: fast),
        .target(name: "ServalTemplate", swiftSettings: plain),
        .target(
            name: "ServalEngine",
            dependencies: [
                "ServalBase", "ServalTensor", "ServalModels", "ServalTokenizer", "ServalTemplate",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Collections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: checked
        ),
        .target(
            name: "ServalServer",
            dependencies: [
                "ServalEngine", "ServalTemplate", "ServalTokenizer",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: plain
        ),
        .target(
            name: "ServalBench",
            dependencies: [
                "ServalTokenizer", "ServalBase",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: plain
        ),
        .executableTarget(
            name: "serval",
            dependencies: [
                "ServalEngine", "ServalServer", "ServalBench", "ServalModels", "ServalTokenizer",
                "ServalTemplate", "ServalTensor", "ServalFormats", "ServalBase", "ServalCUDA",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: plain
        ),
        // One test-support target: the GGUF writer, the default-model path, shared fixtures.
        .target(name: "ServalTestSupport", path: "Tests/ServalTestSupport", resources: [.copy("Fixtures")],
                swiftSettings: plain),
        .testTarget(name: "ServalTensorTests", dependencies: ["ServalTestSupport", "ServalTensor", "ServalFormats", "ServalBase"], resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalFormatsTests", dependencies: ["ServalFormats"], resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalModelsTests", dependencies: ["ServalTestSupport", "ServalModels", "ServalFormats", "ServalTokenizer"], resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalTokenizerTests", dependencies: ["ServalTestSupport", "ServalTokenizer", "ServalFormats"], resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalTemplateTests", dependencies: ["ServalTestSupport", "ServalTemplate"], resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalCUDATests", dependencies: ["ServalCUDA", "ServalTensor", "ServalBase"], swiftSettings: plain),
        .testTarget(name: "ServalBaseTests", dependencies: ["ServalBase"], swiftSettings: plain),
        .testTarget(name: "ServalEngineTests", dependencies: ["ServalTestSupport", "ServalEngine", "ServalBase", "ServalTensor", "ServalModels"], resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalServerTests", dependencies: ["ServalTestSupport", "ServalServer", "ServalEngine"], resources: [.copy("Fixtures")], swiftSettings: plain),
        .testTarget(name: "ServalBenchTests", dependencies: ["ServalTestSupport", "ServalBench", "ServalBase"], resources: [.copy("Fixtures")], swiftSettings: plain),
    ]
)
