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

/// `activity-sync bench stuck-head`: one job stuck at the head of a jobs partition with many jobs behind it.
///
/// Offsets commit in order, so nothing behind the stuck job can commit until it ends: without a bound the worker
/// would consume and run everything behind it and hold every finished job's output. The bench measures, from
/// outside, the worker process's RSS (sampled, and `VmHWM`) and CPU (`/proc/PID/stat`) while the head is stuck
/// and until every job is committed.
///
/// The stuck job: GitHub (the simulator, in this process) never answers the stuck account's `/users/{login}/…`
/// requests, so its sync ends at the worker's sync timeout (`--sync-timeout-s`, set to `--stuck-seconds`) as a
/// failed sync, and its offset commits. Everything runs in one partition per topic.
///
/// Needs a broker that keeps what it is given: the embedded cluster trims a partition to ~5 MB (100k jobs are
/// ~15 MB), so pass `--bootstrap` of a real one (e.g. franz-go's kfake).
struct StuckHeadBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stuck-head",
        abstract: "Measure a worker's memory and CPU per job with one job stuck at a partition's head.")

    @Option(help: "Kafka bootstrap servers of a broker with real retention; default: the embedded cluster (small).")
    var bootstrap: String?
    @Option(help: "Jobs behind the stuck one, all in the same partition.") var jobs = 100_000
    @Option(name: .customLong("stuck-seconds"), help: "How long the job at the head is stuck.") var stuckSeconds = 60
    @Option(help: "Accounts the jobs behind the head cycle through (one simulated user each).") var accounts = 1000
    @Option(help: "Concurrency of the worker.") var concurrency = 64
    @Option(name: .customLong("latency-ms"), help: "Simulated GitHub latency per request.") var latencyMs = 0
    @Option(help: "exactly-once or at-least-once.") var delivery = "exactly-once"
    @Option(
        name: .customLong("worker-binary"),
        help: "The activity-sync binary to run the worker from (e.g. an older build); default: this one.")
    var workerBinary: String?
    @Option(
        name: .customLong("worker-arg"), parsing: .unconditionalSingleValue,
        help:
            "An extra argument for the worker (repeat), e.g. --worker-arg=--max-uncommitted-jobs-per-partition=9999999")
    var workerArgs: [String] = []
    @Flag(
        name: .customLong("jobs-with-sealed-config"),
        help: "Jobs also carry the account's sealed config, for a worker from before jobs without secrets (97768ef).")
    var jobsWithSealedConfig = false
    @Option(name: .customLong("worker-log"), help: "Write the worker's log (stderr) to this file.")
    var workerLog: String?

    func run() async throws {
        let command =
            "activity-sync bench stuck-head --jobs \(jobs) --stuck-seconds \(stuckSeconds) --accounts \(accounts) "
            + "--concurrency \(concurrency) --latency-ms \(latencyMs) --delivery \(delivery)"
            + (bootstrap.map { " --bootstrap \($0)" } ?? "") + (workerBinary.map { " --worker-binary \($0)" } ?? "")
            + workerArgs.map { " --worker-arg=\($0)" }.joined()
            + (jobsWithSealedConfig ? " --jobs-with-sealed-config" : "")
        print("command: \(command)")
        let logger = BenchLogging.bootstrap()
        let prefix = "bench-stuck-\(getpid())-\(Int(Date().timeIntervalSince1970))"
        let topics = TopicNames(prefix: prefix)
        let cluster = try await BenchCluster.make(
            bootstrap: bootstrap, topics: topics, tooSmallFor: "100k jobs", logger: logger)
        let servers = cluster.bootstrapServers

        var simulatorConfiguration = SimulatorConfiguration()
        simulatorConfiguration.users = accounts + 1
        simulatorConfiguration.latency = .milliseconds(latencyMs)
        simulatorConfiguration.pollInterval = 0
        simulatorConfiguration.activityInterval = .seconds(24 * 3600)
        simulatorConfiguration.quotaPerHour = 100_000_000
        let simulator = GitHubSimulator(configuration: simulatorConfiguration, logger: logger)
        try await simulator.start()
        let users = simulator.users
        let stuckUser = users[0]
        var sealedConfigs: [Int: SealedConfig] = [:]
        // Longer than any timeout: the stuck account's syncs end only at the worker's sync deadline.
        simulator.injectFault(
            .delay(.seconds(stuckSeconds + 120)), count: 10_000, pathPrefix: "/users/\(stuckUser.login)/")

        let key = SealingKey.random(id: "bench")
        let sealer = Sealer(current: key)
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("bench-key-\(UUID().uuidString)")
        try "bench:\(key.base64)\n".write(to: keyFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: keyFile) }

        let kafka = KafkaConfiguration(bootstrapServers: servers)
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka, linger: .milliseconds(20), maxQueuedMessages: 200_000),
            logger: logger)
        for user in users {
            sealedConfigs[user.id] = try sealer.seal([
                "access_token": .string(user.token), "refresh_token": .string(user.refreshToken),
            ])
        }
        // The accounts the jobs name, where the worker reads them (jobs carry no config).
        _ = try await producer.send(
            try users.map { user in
                let sealed = sealedConfigs[user.id]!
                let account = AccountRecord(
                    accountId: String(user.id), integration: "github", settings: AccountSettings(),
                    sealedConfig: sealed, updatedAt: Date())
                return ProducerRecord(
                    topic: topics.accounts, partition: 0, key: Array(account.accountId.utf8),
                    value: try account.messageBytes())
            })

        // Counts run records as a read_committed reader sees them: one per committed job, coalesced ones too (a
        // worker commits an account's older waiting ticks as coalesced, with no state record of their own), and none
        // can appear before the head's job ends.
        typealias Progress = (seen: Int, first: ContinuousClock.Instant?, last: ContinuousClock.Instant?)
        let progress = Mutex<Progress>((0, nil, nil))
        let reader = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: servers, properties: ["fetch.wait.max.ms": "50"]),
                groupId: "\(prefix)-reader", isolationLevel: .readCommitted, autoOffsetReset: .earliest,
                sessionTimeout: .seconds(6)),
            logger: logger)
        try reader.subscribe(topics: [topics.runs])
        let readerTask = Task {
            for await event in reader.events {
                guard case .messages(let messages) = event else { continue }
                let now = ContinuousClock.now
                let count = messages.count { message in
                    guard let value = message.value, let run = try? RunRecord.decodeMessage(value) else { return false }
                    return run.jobId?.hasPrefix("bench-") == true
                }
                guard count > 0 else { continue }
                progress.withLock {
                    $0.seen += count
                    if $0.first == nil { $0.first = now }
                    $0.last = now
                }
            }
        }

        var configuration = ChildProcess.Configuration(
            executable: try workerBinary ?? WorkerBench.activitySyncExecutable(),
            arguments: [
                "worker", "--bootstrap", servers, "--topic-prefix", prefix, "--id", "\(prefix)-worker",
                "--concurrency", "\(concurrency)", "--github-url", simulator.baseURL, "--delivery", delivery,
                "--sealing-key-file", keyFile.path, "--session-timeout-ms", "6000", "--no-static-membership",
            ]
                // Only when it is not the default: workers from before the flag existed run the default.
                + (stuckSeconds == 60 ? [] : ["--sync-timeout-s", "\(stuckSeconds)"]) + workerArgs)
        configuration.standardOutput = .null
        configuration.standardError = .pipe
        let worker = try ChildProcess(configuration)
        let log = Mutex<(assigned: Bool, pauses: Int)>((false, 0))
        let logFile = workerLog.flatMap { path in
            FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forWritingAtPath: path) : nil
        }
        OutputPump.start([worker.standardError!], name: "bench-stuck-worker") { _, chunk in
            logFile?.write(Data(chunk))
            let text = String(decoding: chunk, as: UTF8.self)
            log.withLock {
                if text.contains("partitions assigned") { $0.assigned = true }
                $0.pauses += text.components(separatedBy: "partitions paused").count - 1
            }
        }
        let joinDeadline = ContinuousClock.now + .seconds(60)
        while !log.withLock({ $0.assigned }), worker.isRunning, ContinuousClock.now < joinDeadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        guard log.withLock({ $0.assigned }) else {
            throw ValidationError(
                "the worker was not assigned its partition (\(String(describing: worker.termination)))")
        }
        try await Task.sleep(for: .seconds(1))

        // The stuck job first (acknowledged before the rest, so it is the head), then the others behind it, each
        // scheduled a millisecond after the previous (an account's later job is never taken for a duplicate).
        let base = Date().addingTimeInterval(-Double(jobs + 1) / 1000)
        let job = { (index: Int, user: SimulatedUser) throws -> ProducerRecord in
            let job = SyncJob(
                accountId: String(user.id), integration: "github",
                scheduledAt: base.addingTimeInterval(Double(index) / 1000), jobId: "bench-\(index)")
            var value = try WireFormat.encode(job)
            if jobsWithSealedConfig {
                // The job format before jobs without secrets: the same fields plus the account's sealed config.
                var object = try JSONSerialization.jsonObject(with: Data(value)) as? [String: Any] ?? [:]
                object["sealedConfig"] = try JSONSerialization.jsonObject(
                    with: JSONEncoder().encode(sealedConfigs[user.id]!))
                value = Array(try JSONSerialization.data(withJSONObject: object))
            }
            return ProducerRecord(topic: topics.jobs, partition: 0, key: Array(job.accountId.utf8), value: value)
        }
        let cpuStart = Self.cpuSeconds(pid: worker.pid)
        let started = ContinuousClock.now
        _ = try await producer.send([try job(0, stuckUser)])
        for chunk in stride(from: 1, through: jobs, by: 10_000) {
            let records = try (chunk..<min(jobs + 1, chunk + 10_000)).map { index in
                try job(index, users[1 + (index - 1) % accounts])
            }
            _ = try await producer.send(records)
        }
        let published = ContinuousClock.now - started

        var stuckPeak = 0
        var cpuAtRelease: Double?
        var releasedAt: ContinuousClock.Instant?
        var lastRSS = 0
        let deadline = started + .seconds(stuckSeconds + 1800)
        while worker.isRunning, ContinuousClock.now < deadline {
            let (seen, first, _) = progress.withLock { $0 }
            let rss = RestoreBench.memory(of: worker.pid).rss
            if first == nil {
                stuckPeak = max(stuckPeak, rss)
                lastRSS = rss
            } else if releasedAt == nil {
                releasedAt = first
                cpuAtRelease = Self.cpuSeconds(pid: worker.pid)
                print(
                    String(
                        format: "head released after %.1f s; worker RSS then %.1f MiB (peak while stuck %.1f MiB)",
                        (first! - started).timeInterval, Double(lastRSS) / 1_048_576, Double(stuckPeak) / 1_048_576))
                fflush(nil)
            }
            if seen >= jobs { break }
            // Nothing new committed for a minute after the head's job ended: report what was, do not wait on.
            if let last = progress.withLock({ $0.last }), ContinuousClock.now - last > .seconds(60) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let cpuEnd = Self.cpuSeconds(pid: worker.pid)
        let memory = RestoreBench.memory(of: worker.pid)
        let (seen, first, last) = progress.withLock { $0 }
        let pauses = log.withLock { $0.pauses }
        worker.send(SIGTERM)
        _ = await worker.wait(timeout: .seconds(30))
        worker.send(SIGKILL)
        readerTask.cancel()
        await reader.close(timeout: .seconds(5))
        await producer.close(timeout: .seconds(5))
        await simulator.stop()
        await cluster.close()
        guard seen >= jobs, let first, let last else {
            throw ValidationError(
                "only \(seen) of \(jobs) jobs were committed (\(String(describing: worker.termination)))")
        }
        let stuck = (first - started).timeInterval
        let drain = (last - first).timeInterval
        let cpuStuck = (cpuAtRelease ?? cpuEnd) - cpuStart
        let cpuTotal = cpuEnd - cpuStart
        print(
            String(
                format: "published %d jobs in %.1f s; head stuck %.1f s; the rest committed %.1f s later (%.0f jobs/s)",
                jobs + 1, published.timeInterval, stuck, drain, Double(jobs) / max(drain, 0.001)))
        print("")
        print(
            "| head stuck | jobs behind | worker peak RSS (VmHWM) | RSS while stuck (peak sampled) | partition pauses "
                + "| CPU while stuck | CPU total | CPU per job |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(
            String(
                format: "| %.1f s | %d | %.1f MiB | %.1f MiB | %d | %.1f s | %.1f s | %.3f ms |", stuck, jobs,
                Double(memory.peak) / 1_048_576, Double(stuckPeak) / 1_048_576, pauses, cpuStuck, cpuTotal,
                cpuTotal * 1000 / Double(jobs + 1)))
    }

    /// CPU seconds (user + system) a running process used so far, from `/proc/PID/stat`.
    static func cpuSeconds(pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
