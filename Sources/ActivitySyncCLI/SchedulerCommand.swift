import ArgumentParser
import Foundation
import Logging
import Scheduler
import Telemetry

/// `activity-sync scheduler`: one member of the scheduler group; run several for availability.
struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Fire every account's sync jobs on its cron schedule, sharing the accounts with other schedulers.")

    @OptionGroup var kafka: SchedulerKafkaOptions
    @OptionGroup var sealing: SealingKeyOptions

    @Option(help: "Name of this scheduler in logs and Kafka client ids (default: the host name).")
    var id: String?

    @Option(help: "Serve /healthz, /readyz and /metrics on this port (0 picks one).")
    var metricsPort: Int?

    @Option(help: "Milliseconds without heartbeat after which a scheduler's accounts move to the others.")
    var sessionTimeoutMs = 10_000

    @Option(help: "Consumer group shared by the schedulers of one deployment.")
    var group = "activity-sync-scheduler"

    @Option(help: "Integrations accounts may use (comma-separated).")
    var integrations = "github"

    @OptionGroup var external: ExternalIntegrationOptions

    @Option(help: .hidden) var clockOffsetMs = 0

    func run() async throws {
        ProcessMemory.limitMallocArenas()
        let name = id ?? ProcessInfo.processInfo.hostName
        var logger = Logger(label: "activity-sync.scheduler")
        logger[metadataKey: "scheduler"] = "\(name)"
        _ = MetricsBootstrap.prometheus()  // before any service creates a metric
        let readiness = Readiness(components: SchedulerService.readinessComponents)

        var configuration = SchedulerConfiguration(kafka: try kafka.kafka(clientId: "activity-sync-\(name)"))
        configuration.topics = kafka.topics
        configuration.groupId = group
        configuration.sessionTimeout = .milliseconds(sessionTimeoutMs)
        configuration.clockOffset = .milliseconds(clockOffsetMs)
        configuration.validator = AccountValidator(
            knownIntegrations: Set(integrations.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                .union(try external.manifests().map(\.key)),
            sealer: try sealing.sealer(required: false))

        let scheduler = SchedulerService(configuration: configuration, logger: logger) { component, ready in
            readiness.set(component, ready: ready)
        }
        try await ServiceRunner.run(scheduler, metricsPort: metricsPort, readiness: readiness, logger: logger)
    }
}

/// Process-wide allocator tuning for long-running roles that hold millions of small records.
enum ProcessMemory {
    /// Caps glibc at two malloc arenas (`M_ARENA_MAX`, as `MALLOC_ARENA_MAX=2` would). By default glibc gives
    /// busy threads their own arenas, and memory freed in one (parsing garbage, encoded jobs) is not reused by
    /// another: with a million accounts that kept RSS ~130 MB higher. Call before starting threads.
    static func limitMallocArenas() {
        #if os(Linux)
            guard ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil,
                let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "mallopt")
            else { return }
            typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
            let mArenaMax: Int32 = -8
            _ = unsafeBitCast(symbol, to: Mallopt.self)(mArenaMax, 2)
        #endif
    }
}
