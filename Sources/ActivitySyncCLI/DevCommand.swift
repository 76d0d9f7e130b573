import Accounts
import ArgumentParser
import Foundation
import GitHubSimulator
import Kafka
import Logging
import Sealing
import SyncModel
import UnixSignals

/// `activity-sync dev`: the whole system on one machine, as the README's "run the main job" command.
///
/// It starts the embedded Kafka cluster and the GitHub simulator in this process, registers demo accounts sealed
/// with an ephemeral key, and runs the scheduler and workers as child processes of this same binary — so what a
/// newcomer sees is the real thing, not an in-process imitation. The console shows each committed activity and
/// a status line; `--duration` makes it a self-checking smoke test (CI runs it).
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run everything locally: embedded Kafka, GitHub simulator, scheduler, workers, live console."
    )

    @Option(help: "Demo accounts to register (simulated GitHub users).")
    var accounts: Int = 20

    @Option(help: "Worker processes to start.")
    var workers: Int = 2

    @Option(help: "How often each account is synced: 10s, 30s, 1m, 5m… (sets the accounts' cron schedule).")
    var every: String = "10s"

    @Option(help: "Exit on its own after this many seconds, with a summary (0 = run until Ctrl-C).")
    var duration: Int = 0

    @Option(help: "Partitions per topic on the embedded cluster.")
    var partitions: Int32 = 12

    @Option(
        help:
            "Delivery mode for the workers. The embedded cluster's transactions are not real, so the default here is at-least-once."
    )
    var delivery: String = "at-least-once"

    @Option(help: "Use this GitHub API instead of the simulator (with --token-file).")
    var githubURL: String?

    @Option(help: "A GitHub token to sync one real account with (with --github-url).")
    var tokenFile: String?

    @Option(help: "Simulated latency of every GitHub request, in milliseconds.")
    var latencyMs: Int = 20

    @Flag(help: "Print only the status line and summary, not each activity.")
    var quiet = false

    @Option(
        name: .customLong("integration"),
        help:
            "KEY=COMMAND: also run this external integration (SDK CLI); its setup's accounts join the demo (repeatable)."
    )
    var externalIntegrations: [String] = []

    @Option(help: "JSON file: the setup event body for --integration (default {}).")
    var integrationEventBody: String?

    func validate() throws {
        guard accounts > 0 else { throw ValidationError("--accounts must be at least 1") }
        guard workers > 0 else { throw ValidationError("--workers must be at least 1") }
        _ = try Self.cronSchedule(every: every)
        if (githubURL == nil) != (tokenFile == nil) {
            throw ValidationError("--github-url and --token-file go together: give both to sync a real account")
        }
    }

    /// Turns `--every` into the accounts' cron schedule: seconds use the 6-field form, minutes the standard one.
    static func cronSchedule(every: String) throws -> String {
        let text = every.trimmingCharacters(in: .whitespaces).lowercased()
        let unit = text.last
        guard let unit, let value = Int(text.dropLast()), value > 0 else {
            throw ValidationError("--every \(every): expected a number with s or m, such as 10s or 5m")
        }
        switch unit {
        case "s" where value < 60 && 60 % value == 0: return "*/\(value) * * * * *"
        case "m" where value < 60 && 60 % value == 0: return "*/\(value) * * * *"
        default:
            throw ValidationError("--every \(every): use seconds or minutes that divide 60 (5s, 10s, 30s, 1m, 5m…)")
        }
    }

    func run() async throws {
        var logger = Logger(label: "activity-sync.dev")
        logger.logLevel = .warning
        let schedule = try Self.cronSchedule(every: every)
        let started = Date()
        // Watch for Ctrl-C before anything starts, so an early one still stops everything cleanly.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let runDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("activity-sync-dev-\(ProcessInfo.processInfo.processIdentifier)")
        let children = try ChildProcesses(logDirectory: runDirectory.appendingPathComponent("logs"))

        // 1. Kafka.
        let cluster = try EmbeddedKafkaCluster(brokers: 1, logger: logger)
        let topics = TopicNames.default
        try cluster.createTopics(topics.all.map(\.name), partitions: partitions)
        let kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)

        // 2. GitHub: the simulator, or a real API with one token.
        let simulator: GitHubSimulator?
        let apiURL: String
        let demoAccounts: [(id: String, login: String?, config: JSONValue)]
        if let githubURL, let tokenFile {
            let token = try String(contentsOfFile: tokenFile, encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            simulator = nil
            apiURL = githubURL
            demoAccounts = [("real", nil, ["access_token": .string(token)])]
        } else {
            var configuration = SimulatorConfiguration()
            configuration.users = accounts
            configuration.latency = .milliseconds(latencyMs)
            // Let the demo poll as often as its schedule; GitHub's real 60 s would make it look idle.
            configuration.pollInterval = 1
            configuration.historyHours = 2
            configuration.activityInterval = .seconds(20)
            // GitHub as it really behaves: threads re-bumped by new activity, events shown a few seconds late.
            configuration.threadBumps = true
            configuration.eventLag = .seconds(3)
            let sim = GitHubSimulator(configuration: configuration, logger: logger)
            try await sim.start()
            simulator = sim
            apiURL = sim.baseURL
            demoAccounts = sim.users.map { user in
                (
                    String(user.id), user.login,
                    ["access_token": .string(user.token), "refresh_token": .string(user.refreshToken)]
                )
            }
        }

        // 3. Accounts, sealed with a key that lives only as long as this run.
        let key = SealingKey.random()
        let keyFile = runDirectory.appendingPathComponent("sealing.key")
        guard
            FileManager.default.createFile(
                atPath: keyFile.path, contents: Data((key.base64 + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw ValidationError("could not write the ephemeral sealing key to \(keyFile.path); is /tmp writable?")
        }
        let sealer = Sealer(current: key)
        try await AccountsTopicClient(kafka: kafka, topics: topics, logger: logger).put(
            demoAccounts.map { account in
                AccountRecord(
                    accountId: account.id, integration: "github",
                    settings: AccountSettings(username: account.login, frequency: schedule),
                    sealedConfig: try sealer.seal(account.config), updatedAt: Date())
            })

        let external = try await DevExternalIntegrations.register(
            externalIntegrations, eventBodyFile: integrationEventBody, directory: runDirectory, schedule: schedule,
            sealer: sealer, kafka: kafka, topics: topics, logger: logger)

        // 4. The processes a deployment runs.
        let common =
            ["--bootstrap", cluster.bootstrapServers, "--sealing-key-file", keyFile.path]
            + (external.map { ["--integrations-file", $0.file] } ?? [])
        try children.start(
            "scheduler", arguments: ["scheduler", "--id", "dev-scheduler", "--session-timeout-ms", "6000"] + common)
        for index in 1...workers {
            try children.start(
                "worker-\(index)",
                arguments: [
                    "worker", "--id", "dev-worker-\(index)", "--github-url", apiURL, "--delivery", delivery,
                    "--session-timeout-ms", "6000",
                ] + common)
        }

        print("activity-sync dev: \(demoAccounts.count) accounts every \(every), \(workers) worker(s)")
        if let external {
            print(
                "  external   \(external.accounts) account(s) of \(externalIntegrations.count) integration(s), \(external.file)"
            )
        }
        print(
            "  kafka      \(cluster.bootstrapServers)   (activity-sync tail activities --bootstrap \(cluster.bootstrapServers))"
        )
        print("  github     \(apiURL)")
        print("  logs       \(children.logDirectory.path)")
        print(duration > 0 ? "  stopping after \(duration)s" : "  Ctrl-C to stop")
        fflush(nil)

        // 5. The console, until Ctrl-C or --duration.
        let console = DevConsole(kafka: kafka, topics: topics, partitions: partitions, quiet: quiet, logger: logger)
        let quota: @Sendable () -> Int = {
            guard let simulator else { return 0 }
            return simulator.users.reduce(0) { $0 + simulator.quotaUsed(token: $1.token) }
        }
        let accountCount = demoAccounts.count + (external?.accounts ?? 0)
        let consoleTask = Task { await console.run(accounts: accountCount, quotaUsed: quota, children: children) }
        // Whichever comes first stops the run: Ctrl-C/SIGTERM, or --duration. The signal wait cannot be
        // cancelled, so it runs unstructured and only reports into the stream.
        let (stop, stopRequested) = AsyncStream<Void>.makeStream()
        Task.detached {
            for await _ in signals {
                stopRequested.yield()
                break
            }
        }
        let timer = Task {
            guard duration > 0 else { return }
            try await Task.sleep(for: .seconds(duration))
            stopRequested.yield()
        }
        for await _ in stop { break }
        timer.cancel()

        print("\nstopping: scheduler and workers get SIGTERM and drain")
        await children.stopAll(grace: .seconds(25))
        // The key only ever protected this run's demo accounts; the logs stay for reading.
        try? FileManager.default.removeItem(at: keyFile)
        // Activities the workers committed while draining are still shown before the consumer closes.
        consoleTask.cancel()
        await console.close()
        await consoleTask.value
        await simulator?.stop()
        await cluster.close()
        let summary = console.summary
        let crashed = children.exited().filter { $0.status != 0 }
        print(
            "summary: accounts=\(accountCount) jobs=\(summary.jobs) activities=\(summary.activities) "
                + "distinct=\(summary.distinctActivities) githubQuotaUsed=\(quota()) "
                + "seconds=\(Int(Date().timeIntervalSince(started)))")
        if !crashed.isEmpty {
            print(
                "children that exited with an error: \(crashed.map { "\($0.name)=\($0.status)" }.joined(separator: ", ")) — see \(children.logDirectory.path)"
            )
            throw ExitCode(1)
        }
    }
}
