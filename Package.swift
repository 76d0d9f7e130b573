// swift-tools-version:6.2
// activity-sync: keeps a knowledge graph fed with what happens in people's GitHub accounts.
// One module per capability; see docs/architecture.md for why the seams are where they are.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("InternalImportsByDefault"),
    // A member is visible only in files that import its module (SE-0444), so each file says what it uses.
    .enableUpcomingFeature("MemberImportVisibility"),
    // A warning is a defect to fix now, not noise to learn to ignore; dependencies keep their own settings.
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "activity-sync",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "activity-sync", targets: ["ActivitySyncCLI"]),
        .executable(name: "activity-sync-bench", targets: ["ActivitySyncBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // The C library, visible to the Kafka module only.
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Child processes that die with their parent: fork/exec with PR_SET_PDEATHSIG (C, between fork and exec),
        // reaped by a thread of their own. Every process activity-sync, its benchmarks or its tests start.
        .target(name: "CSubprocesses"),
        .target(name: "Subprocesses", dependencies: ["CSubprocesses"], swiftSettings: swiftSettings),
        // Records that cross topics. No dependencies: everyone imports it.
        .target(name: "SyncModel", swiftSettings: swiftSettings),
        .target(name: "Cron", swiftSettings: swiftSettings),
        .target(
            name: "Sealing",
            dependencies: [
                "SyncModel",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GitHub",
            dependencies: [
                "SyncModel", "IntegrationCatalog",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GitHubSimulator",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The `Integration` seam (protocol, request, outcome, error, registry) and the catalog of the integrations one
        // deployment runs (built-ins the CLI hands it + the integrations file's entries) with their key rules: the
        // worker's registry, the scheduler's known keys, `integrations list`.
        .target(name: "IntegrationCatalog", dependencies: ["SyncModel"], swiftSettings: swiftSettings),
        // Integrations that are programs with the sync-integration SDK's CLI contract (spec/setup/sync), run as
        // bounded child processes; the registry file that names them.
        .target(
            name: "ExternalIntegrations",
            dependencies: [
                "SyncModel", "Cron", "Subprocesses", "IntegrationCatalog",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // /healthz, /readyz and Prometheus /metrics, shared by scheduler and worker.
        .target(
            name: "Telemetry",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Scheduler",
            dependencies: [
                "Kafka", "SyncModel", "Cron",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The accounts topic from outside the scheduler: operator tools, `enqueue`, dev mode, tests.
        .target(
            name: "Accounts",
            dependencies: ["Kafka", "SyncModel", "Cron", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // Knows integrations only through IntegrationCatalog's `Integration`; the CLI hands it GitHub's.
        .target(
            name: "Worker",
            dependencies: [
                "Kafka", "SyncModel", "IntegrationCatalog", "Sealing",
                // SHA-256 of dead-lettered values.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Throughput measurements, apart from the roles and the tests; `activity-sync bench` hosts them too.
        .target(
            name: "Benchmarks",
            dependencies: [
                "Kafka", "SyncModel", "Cron", "Sealing", "GitHub", "GitHubSimulator", "Scheduler", "Subprocesses",
                "IntegrationCatalog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ActivitySyncBench",
            dependencies: ["Benchmarks", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ActivitySyncCLI",
            dependencies: [
                "Kafka", "SyncModel", "Cron", "Sealing", "GitHub", "GitHubSimulator", "Telemetry",
                "Scheduler", "Worker", "Accounts", "Benchmarks", "ExternalIntegrations", "IntegrationCatalog",
                "Subprocesses",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The project's test kit: deadlines, log capture, the simulator on port 0, child processes of the built
        // binary, topic reads.
        .target(
            name: "ActivitySyncTesting",
            dependencies: [
                "Kafka", "SyncModel", "GitHubSimulator", "Subprocesses",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KafkaTests", dependencies: ["Kafka", "ActivitySyncTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SubprocessesTests", dependencies: ["Subprocesses", "ActivitySyncTesting"],
            swiftSettings: swiftSettings),
        .testTarget(name: "SyncModelTests", dependencies: ["SyncModel"], swiftSettings: swiftSettings),
        .testTarget(
            name: "AccountsTests", dependencies: ["Accounts", "Kafka", "SyncModel", "ActivitySyncTesting"],
            swiftSettings: swiftSettings),
        .testTarget(name: "CronTests", dependencies: ["Cron"], swiftSettings: swiftSettings),
        .testTarget(name: "SealingTests", dependencies: ["Sealing", "SyncModel"], swiftSettings: swiftSettings),
        .testTarget(
            name: "GitHubTests",
            dependencies: ["GitHub", "GitHubSimulator", "SyncModel", "IntegrationCatalog", "ActivitySyncTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GitHubSimulatorTests",
            dependencies: [
                "GitHubSimulator", "ActivitySyncTesting",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SchedulerTests",
            dependencies: [
                "Scheduler", "Accounts", "Cron", "Sealing", "SyncModel", "Kafka", "ActivitySyncTesting",
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WorkerTests",
            dependencies: [
                "Worker", "GitHub", "GitHubSimulator", "Sealing", "SyncModel", "Kafka", "ActivitySyncTesting",
                "ExternalIntegrations", "IntegrationCatalog",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "Kafka", "SyncModel", "Sealing", "Accounts", "GitHubSimulator", "ActivitySyncTesting",
                "ExternalIntegrations", "Subprocesses",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ExternalIntegrationsTests",
            dependencies: ["ExternalIntegrations", "IntegrationCatalog", "SyncModel", "ActivitySyncTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationCatalogTests",
            dependencies: [
                "IntegrationCatalog", "ExternalIntegrations", "SyncModel",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DeployTests", dependencies: ["ActivitySyncTesting", "SyncModel", "Subprocesses"],
            swiftSettings: swiftSettings),
    ]
)
