import ArgumentParser
import Foundation
import IntegrationCatalog
import Logging
import Scheduler
import Telemetry
import ExternalIntegrations

/// `activity-sync scheduler`: one member of the scheduler group; run several for availability.
struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Fire every account's sync jobs on its cron schedule, sharing the accounts with other schedulers.")

    @OptionGroup var options: CommonOptions
    /// Accepted and ignored, so deployments that still pass the key keep starting: jobs carry no sealed config,
    /// so the scheduler never reads one and needs no key.
    @OptionGroup(visibility: .hidden) var sealing: SealingKeyOptions

    @Option(help: "Name of this scheduler in logs and Kafka client ids (default: the host name).")
    var id: String?

    @Option(help: "Serve /healthz, /readyz and /metrics on this port (0 picks one).")
    var metricsPort: Int?

    @Option(help: "Milliseconds without heartbeat after which a scheduler's accounts move to the others.")
    var sessionTimeoutMs = 10_000

    @Option(help: "Consumer group shared by the schedulers of one deployment.")
    var group = "activity-sync-scheduler"

    @Option(help: "Built-in integrations accounts may use (comma-separated; default: every built-in).")
    var integrations: String?

    @OptionGroup var external: ExternalIntegrationOptions

    @Option(help: .hidden) var clockOffsetMs = 0

    func run() async throws {
        ProcessMemory.limitMallocArenas()
        let name = id ?? ProcessInfo.processInfo.hostName
        var logger = options.bootstrapLogging("activity-sync.scheduler", defaultLevel: .info)
        logger[metadataKey: "scheduler"] = "\(name)"
        _ = MetricsBootstrap.prometheus()  // before any service creates a metric
        let readiness = Readiness(components: SchedulerService.readinessComponents)

        var configuration = SchedulerConfiguration(
            kafka: try options.kafka(clientId: "activity-sync-\(name)"),
            validator: AccountValidator(knownIntegrations: try knownIntegrations()))
        configuration.topics = options.topics
        configuration.groupId = group
        configuration.sessionTimeout = .milliseconds(sessionTimeoutMs)
        configuration.clockOffset = .milliseconds(clockOffsetMs)

        let scheduler = SchedulerService(configuration: configuration, logger: logger) { component, ready in
            readiness.set(component, ready: ready)
        }
        try await ServiceRunner.run(scheduler, metricsPort: metricsPort, readiness: readiness, logger: logger)
    }

    /// The integration keys accounts may name: the built-ins `--integrations` names (all of them by default) and
    /// every key of the integrations file.
    private func knownIntegrations() throws -> Set<String> {
        let catalog = try external.catalog()
        guard let integrations else { return catalog.keys }
        let named = Set(integrations.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        let unknown = named.subtracting(catalog.builtInKeys)
        guard unknown.isEmpty else {
            throw ValidationError(
                "--integrations: \(unknown.sorted().joined(separator: ", ")) is not built in (built in: "
                    + "\(catalog.builtInKeys.sorted().joined(separator: ", "))); external integrations are known "
                    + "from --integrations-file")
        }
        return named.union(catalog.externalKeys)
    }
}
