import ArgumentParser
import Foundation
import GitHubSimulator
import Kafka
import Logging
import Sealing
import Subprocesses
import SyncModel
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `activity-sync bench worker`: N accounts on the simulator, jobs published directly (no scheduler), synced by
/// 1 or 2 worker processes (children of this binary, so their CPU is measured apart from the cluster and the
/// simulator, which run in this process).
struct WorkerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Measure worker throughput, latency, CPU and quota per job.")

    @Option(help: "Accounts (simulated users).") var accounts = 1000
    @Option(help: "Worker processes.") var workers = 1
    @Option(name: .customLong("latency-ms"), help: "Simulated GitHub latency per request.") var latencyMs = 50
    @Option(help: "Concurrency per worker.") var concurrency = 64
    @Option(help: "Rounds of one job per account; round 1 is the first sync, later rounds are unchanged accounts.")
    var rounds = 2
    @Option(help: "exactly-once or at-least-once.") var delivery = "at-least-once"
    @Option(help: "Jobs topic partitions.") var partitions: Int32 = 12

    func run() async throws {
        let command =
            "activity-sync bench worker --accounts \(accounts) --workers \(workers) --latency-ms \(latencyMs) "
            + "--concurrency \(concurrency) --rounds \(rounds) --delivery \(delivery)"
        print("command: \(command)")
        let logger = BenchLogging.bootstrap()
        let cluster = try EmbeddedKafkaCluster(brokers: 1, logger: logger)
        let topics = TopicNames()
        try cluster.createTopics(topics.all.map(\.name), partitions: partitions)

        var simulatorConfiguration = SimulatorConfiguration()
        simulatorConfiguration.users = accounts
        simulatorConfiguration.latency = .milliseconds(latencyMs)
        simulatorConfiguration.pollInterval = 1
        simulatorConfiguration.activityInterval = .seconds(24 * 3600)  // unchanged accounts after the first sync
        simulatorConfiguration.quotaPerHour = 1_000_000
        let simulator = GitHubSimulator(configuration: simulatorConfiguration, logger: logger)
        try await simulator.start()

        let key = SealingKey.random(id: "bench")
        let sealer = Sealer(current: key)
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("bench-key-\(UUID().uuidString)")
        try "bench:\(key.base64)\n".write(to: keyFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: keyFile) }
        let users = simulator.users
        let configs = try users.map { user in
            try sealer.seal(["access_token": .string(user.token), "refresh_token": .string(user.refreshToken)])
        }

        let reader = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: KafkaConfiguration(
                    bootstrapServers: cluster.bootstrapServers, properties: ["fetch.wait.max.ms": "10"]),
                groupId: "bench-reader",
                isolationLevel: .readCommitted, autoOffsetReset: .earliest, sessionTimeout: .seconds(6)),
            logger: logger)
        try reader.subscribe(topics: [topics.state])
        var events = reader.events.makeAsyncIterator()
        // The reader joins its own group first, so its join is not counted as latency.
        while true {
            guard let event = await events.next() else { break }
            if case .assigned = event { break }
        }
        // Workers first; jobs once every worker owns partitions (group joins are not what we measure).
        let executable = try Self.activitySyncExecutable()
        var children: [BenchChild] = []
        for index in 0..<workers {
            children.append(
                try BenchChild(
                    executable: executable,
                    arguments: [
                        "worker", "--bootstrap", cluster.bootstrapServers, "--id", "bench-\(index)",
                        "--concurrency", "\(concurrency)", "--github-url", simulator.baseURL, "--delivery", delivery,
                        "--sealing-key-file", keyFile.path, "--session-timeout-ms", "6000",
                    ]))
        }
        let joinDeadline = ContinuousClock.now + .seconds(60)
        while children.contains(where: { !$0.sawAssignment }), ContinuousClock.now < joinDeadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        // A second worker triggers a rebalance of the first: wait until it settles.
        if workers > 1 { try await Task.sleep(for: .seconds(8)) }

        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)),
            logger: logger)

        // The accounts the jobs name, where the workers read them (jobs carry no config).
        _ = try await producer.send(
            try users.enumerated().map { index, user in
                let account = AccountRecord(
                    accountId: String(user.id), integration: "github", settings: AccountSettings(),
                    sealedConfig: configs[index], updatedAt: Date())
                return ProducerRecord(
                    topic: topics.accounts, key: Array(account.accountId.utf8), value: try account.messageBytes())
            })

        var results: [String] = []
        for round in 1...rounds {
            // Let the simulator's X-Poll-Interval (1 s here) pass, or unchanged syncs would be skipped, not measured.
            if round > 1 { try await Task.sleep(for: .seconds(2)) }
            let requestsBefore = simulator.requests().count
            let quotaBefore = users.reduce(0) { $0 + simulator.quotaUsed(token: $1.token) }
            let cpuBefore = childrenCPU(children)
            let scheduledAt = Date()
            let jobs = try users.map { user -> ProducerRecord in
                let job = SyncJob(accountId: String(user.id), integration: "github", scheduledAt: scheduledAt)
                return ProducerRecord(
                    topic: topics.jobs, key: Array(job.accountId.utf8), value: try WireFormat.encode(job))
            }
            let started = ContinuousClock.now
            _ = try await producer.send(jobs)
            var latencies: [Double] = []
            var seen = Set<String>()
            let deadline = ContinuousClock.now + .seconds(600)
            while seen.count < users.count, ContinuousClock.now < deadline {
                guard let event = await events.next() else { break }
                guard case .messages(let messages) = event else { continue }
                let now = Date()
                for message in messages {
                    guard let value = message.value, let state = try? WireFormat.decode(StateRecord.self, from: value),
                        let marker = state.lastJob, abs(marker.scheduledAt.timeIntervalSince(scheduledAt)) < 0.001,
                        seen.insert(state.accountId).inserted
                    else { continue }
                    latencies.append(now.timeIntervalSince(scheduledAt))
                }
            }
            let elapsed = ContinuousClock.now - started
            let seconds = elapsed.timeInterval
            let cpu = childrenCPU(children) - cpuBefore
            let requests = simulator.requests().count - requestsBefore
            let quota = users.reduce(0) { $0 + simulator.quotaUsed(token: $1.token) } - quotaBefore
            latencies.sort()
            func percentile(_ p: Double) -> Double {
                latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] * 1000
            }
            let jobsPerSecond = Double(seen.count) / seconds
            let requestsPerJob = Double(requests) / Double(max(1, seen.count))
            let bound = Double(concurrency * workers) / (max(requestsPerJob, 1) * Double(latencyMs) / 1000)
            let line = String(
                format:
                    "round %d (%@): %d/%d jobs in %.2f s = %.0f jobs/s; scheduled→committed p50 %.0f ms p99 %.0f ms; "
                    + "worker CPU %.3f ms/job; %.2f requests/job, %.2f quota/job; latency bound %.0f jobs/s (ratio %.2f)",
                round, round == 1 ? "first sync" : "unchanged", seen.count, users.count, seconds, jobsPerSecond,
                percentile(0.5), percentile(0.99), cpu * 1000 / Double(max(1, seen.count)), requestsPerJob,
                Double(quota) / Double(max(1, seen.count)), bound, bound / max(jobsPerSecond, 0.001))
            print(line)
            fflush(nil)
            results.append(line)
        }
        await reader.close(timeout: .seconds(5))
        await producer.close(timeout: .seconds(5))
        for child in children { child.terminate() }
        for child in children { await child.wait() }
        await simulator.stop()
        await cluster.close()
    }

    /// CPU seconds (user + system) of the worker processes so far, read from /proc (they are still running).
    func childrenCPU(_ children: [BenchChild]) -> Double {
        children.reduce(0) { $0 + $1.cpuSeconds() }
    }

    /// The `activity-sync` binary the workers run as: this one, or the one built beside `activity-sync-bench`.
    static func activitySyncExecutable() throws -> String {
        let current = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        guard current.lastPathComponent != "activity-sync" else { return current.path }
        let sibling = current.deletingLastPathComponent().appendingPathComponent("activity-sync").path
        guard FileManager.default.isExecutableFile(atPath: sibling) else {
            throw ValidationError(
                "the workers run as `activity-sync worker`, and \(sibling) does not exist: build it first "
                    + "(`swift build -c release --product activity-sync`)")
        }
        return sibling
    }
}

/// A worker child process whose stderr is scanned for the assignment log line.
final class BenchChild: Sendable {
    private let process: ChildProcess
    private let assigned = Flag()

    /// Set by the pump thread, read by the bench.
    private final class Flag: Sendable {
        let value = Atomic<Bool>(false)
    }

    init(executable: String, arguments: [String]) throws {
        var configuration = ChildProcess.Configuration(executable: executable, arguments: arguments)
        configuration.standardOutput = .null
        configuration.standardError = .pipe
        process = try ChildProcess(configuration)
        OutputPump.start([process.standardError!], name: "bench-worker-\(process.pid)") { [assigned] _, bytes in
            // A line may straddle two reads; the phrase is short and the log line is written in one call.
            if String(decoding: bytes, as: UTF8.self).contains("partitions assigned") {
                assigned.value.store(true, ordering: .relaxed)
            }
        }
    }

    var sawAssignment: Bool { assigned.value.load(ordering: .relaxed) }

    func cpuSeconds() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14 and stime 15 (1-based), so indices 11 and 12 here.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func terminate() { process.send(SIGTERM) }
    func wait() async { _ = await process.wait() }
}
