import ArgumentParser
import Foundation
import GitHub
import IntegrationCatalog
import Kafka
import Logging
import Sealing
import SyncModel
import ServiceLifecycle
import Telemetry
import Worker

/// `activity-sync worker`: one member of the worker group.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Consume sync jobs, run them against GitHub, and write activities and state to Kafka.")

    @OptionGroup var options: CommonOptions

    @Option(help: "Worker id; its transactional.id is activity-sync-worker-ID. Keep it stable across restarts.")
    var id: String?

    @Option(help: "Accounts synced at the same time.")
    var concurrency = 64

    @Option(
        help:
            "Consumer group shared by the workers of one pipeline; a second pipeline (its own --topic-prefix) needs its own."
    )
    var group = "activity-sync-workers"

    @Option(name: .customLong("github-url"), help: "GitHub API base URL.")
    var githubURL = "https://api.github.com"

    @Option(help: "exactly-once (transactions) or at-least-once.")
    var delivery = DeliveryMode.exactlyOnce.rawValue

    @Option(name: .customLong("metrics-port"), help: "Serve /healthz, /readyz and /metrics on this port.")
    var metricsPort: Int?

    @OptionGroup var sealing: SealingKeyOptions

    @Option(name: .customLong("commit-interval-ms"), help: "Longest wait before output is committed.")
    var commitIntervalMs = 100

    @Option(name: .customLong("session-timeout-ms"), help: "Consumer group session timeout.")
    var sessionTimeoutMs = 10_000

    @Option(name: .customLong("shutdown-timeout-s"), help: "On SIGTERM/SIGINT, how long in-flight jobs may finish.")
    var shutdownTimeoutS = 20

    @Option(
        name: .customLong("transaction-timeout-s"),
        help: "transaction.timeout.ms: the broker aborts a transaction of a dead worker after this long.")
    var transactionTimeoutS = 30

    @Option(
        name: .customLong("restore-timeout-s"),
        help: "How long one read of a state partition may take (it waits for open transactions below the end).")
    var restoreTimeoutS = 120

    @Option(
        name: .customLong("sync-timeout-s"),
        help: "How long one job's sync may take before it is given up (its status says so).")
    var syncTimeoutS = 60

    @Option(
        name: .customLong("max-uncommitted-jobs-per-partition"),
        help: "A partition is paused while it holds this many jobs not yet committed (behind a slow job at its head).")
    var maxUncommittedJobsPerPartition = 2_000

    @Option(
        name: .customLong("max-uncommitted-bytes-per-partition"),
        help: "…or this many bytes of finished output not yet committed.")
    var maxUncommittedBytesPerPartition = 16 << 20

    @Flag(
        inversion: .prefixedNo,
        help:
            "Static group membership (group.instance.id = the transactional id): a restart under the same --id takes its partitions back without a rebalance; a stopped worker's partitions move after the session timeout."
    )
    var staticMembership = true

    @OptionGroup var external: ExternalIntegrationOptions

    func validate() throws {
        guard DeliveryMode(rawValue: delivery) != nil else {
            throw ValidationError("--delivery must be exactly-once or at-least-once")
        }
        guard concurrency > 0 else { throw ValidationError("--concurrency must be at least 1") }
        guard syncTimeoutS > 0 else { throw ValidationError("--sync-timeout-s must be positive") }
        guard maxUncommittedJobsPerPartition > 0, maxUncommittedBytesPerPartition > 0 else {
            throw ValidationError("--max-uncommitted-jobs-per-partition and -bytes-per-partition must be positive")
        }
        guard commitIntervalMs > 0 else { throw ValidationError("--commit-interval-ms must be positive") }
        guard transactionTimeoutS > 0 else { throw ValidationError("--transaction-timeout-s must be positive") }
        guard restoreTimeoutS > transactionTimeoutS else {
            throw ValidationError(
                "--restore-timeout-s (\(restoreTimeoutS)) must exceed --transaction-timeout-s (\(transactionTimeoutS)): a "
                    + "restore waits for open transactions, which the broker aborts only after the transaction timeout")
        }
    }

    func run() async throws {
        let bootstrap = try options.bootstrapServers()
        let sealer = try sealing.requiredSealer()
        let logger = options.bootstrapLogging("activity-sync.worker", defaultLevel: .info)
        let workerId = id ?? Self.defaultId()
        _ = MetricsBootstrap.prometheus()  // before any service creates a metric
        let readiness = Readiness(components: ["worker"])
        var configuration = WorkerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: bootstrap, clientId: "activity-sync-worker-\(workerId)"),
            workerId: workerId)
        configuration.topics = options.topics
        configuration.groupId = group
        configuration.concurrency = concurrency
        configuration.delivery = DeliveryMode(rawValue: delivery) ?? .exactlyOnce
        configuration.commitInterval = .milliseconds(commitIntervalMs)
        configuration.sessionTimeout = .milliseconds(sessionTimeoutMs)
        configuration.shutdownDeadline = .seconds(shutdownTimeoutS)
        configuration.transactionTimeout = .seconds(transactionTimeoutS)
        configuration.restoreTimeout = .seconds(restoreTimeoutS)
        configuration.staticMembership = staticMembership
        configuration.syncTimeout = .seconds(syncTimeoutS)
        configuration.maxUncommittedJobsPerPartition = maxUncommittedJobsPerPartition
        configuration.maxUncommittedBytesPerPartition = maxUncommittedBytesPerPartition
        configuration.onReadinessChange = { ready in readiness.set("worker", ready: ready) }

        var github = GitHubConfiguration()
        github.baseURL = githubURL
        let catalog = try external.catalog(github: github, logger: logger)
        let worker = WorkerService(
            configuration: configuration, integrations: catalog.registry, sealer: sealer, logger: logger)
        print("worker \(workerId) starting: delivery=\(configuration.delivery.rawValue) bootstrap=\(bootstrap)")
        fflush(nil)
        do {
            try await ServiceRunner.run(worker, metricsPort: metricsPort, readiness: readiness, logger: logger)
        } catch let error as WorkerError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(error.exitCode)
        } catch let error as ServiceGroupError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print("worker \(workerId) stopped")
        fflush(nil)
    }

    static func defaultId() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker"
        return host.isEmpty ? "worker" : host
    }
}
