import ArgumentParser
import Cron
import Foundation
import Kafka
import Logging
import Scheduler
import Sealing
import ServiceLifecycle
import Subprocesses
import Synchronization
import SyncModel

/// `activity-sync bench scheduler`: a million `*/5` accounts through a real scheduler on the embedded cluster.
///
/// The cluster (and the producer that fills the accounts topic) runs in a child process, so this process's
/// RSS is the scheduler's alone. Loading fires one catch-up job per account at once — the publish-throughput
/// phase — after which the accounts settle into the steady rate of N / 300 jobs per second, where the schedule
/// lag (fire time − due time) is measured.
struct SchedulerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler", abstract: "Benchmark the scheduler: load time, RSS, publish rate, schedule lag.")

    @Option(help: "Number of accounts, all on `*/5 * * * *`.") var accounts = 1_000_000
    @Option(help: "Seconds of the steady phase.") var steadySeconds = 60
    /// The mock keeps at most ~5 MB and 100k records per partition, so a million ~450-byte accounts need ~100.
    @Option(help: "Partitions of the accounts and jobs topics.") var partitions: Int32 = 128
    @Option(
        help:
            "Kafka bootstrap servers of a broker with real retention (the accounts topic is filled once and reused); default: the embedded cluster in a child process."
    )
    var bootstrap: String?
    /// The scheduler's own defaults, which the options start from.
    private static let defaults = SchedulerConfiguration(
        kafka: KafkaConfiguration(bootstrapServers: ""), validator: AccountValidator(knownIntegrations: []))
    @Option(
        name: .customLong("load-concurrency"),
        help: "Accounts partitions the scheduler reads at once (its loadConcurrency).")
    var loadConcurrency = Self.defaults.loadConcurrency
    @Option(
        name: .customLong("max-in-flight-batches"),
        help: "Job batches awaiting delivery reports at once (its maxInFlightBatches).")
    var maxInFlightBatches = Self.defaults.maxInFlightBatches
    @Flag(
        help: """
            Also fill the status topic (embedded cluster only): one status per account, every 20th needs_reauth for \
            its record, so those get no jobs.
            """)
    var statuses = false
    @Flag(help: .hidden) var serveCluster = false
    @Flag(help: .hidden) var fillOnly = false
    @Flag(help: .hidden) var coreOnly = false
    @Option(help: .hidden) var topicPrefix = "bench"

    func run() async throws {
        if serveCluster {
            try await serve()
            return
        }
        if fillOnly, let bootstrap {
            try await fillExternal(bootstrap: bootstrap)
            return
        }
        if coreOnly {
            try coreFootprint()
            return
        }
        ProcessMemory.limitMallocArenas()
        let command =
            "activity-sync bench scheduler --accounts \(accounts) --steady-seconds \(steadySeconds) "
            + "--partitions \(partitions) --load-concurrency \(loadConcurrency) "
            + "--max-in-flight-batches \(maxInFlightBatches)" + (bootstrap.map { " --bootstrap \($0)" } ?? "")
            + (statuses ? " --statuses" : "")
        print("command: \(command)")
        if let bootstrap {
            // Filled by a child, so its producer's memory is not counted as the scheduler's.
            let path = CommandLine.arguments.dropFirst().prefix { $0 != "scheduler" }
            let filled = try await ChildProcess.run(
                ChildProcess.Configuration(
                    executable: "/proc/self/exe",
                    arguments: path + [
                        "scheduler", "--fill-only", "--bootstrap", bootstrap, "--accounts", "\(accounts)",
                        "--partitions", "\(partitions)", "--topic-prefix", topicPrefix,
                    ]))
            for line in filled.text.split(separator: "\n") { print("fill: \(line)") }
            guard filled.termination == .exited(0) else { throw ValidationError("filling the accounts topic failed") }
            try await measure(bootstrap: bootstrap)
            return
        }
        // The same command path this process was started with (`activity-sync bench scheduler` or
        // `activity-sync-bench scheduler`), in child mode.
        let path = CommandLine.arguments.dropFirst().prefix { $0 != "scheduler" }
        var configuration = ChildProcess.Configuration(
            executable: "/proc/self/exe",
            arguments: path + [
                "scheduler", "--serve-cluster", "--accounts", "\(accounts)", "--partitions", "\(partitions)",
                "--topic-prefix", topicPrefix,
            ] + (statuses ? ["--statuses"] : []))
        configuration.standardOutput = .pipe
        configuration.standardInput = .pipe
        let child = try ChildProcess(configuration)
        let output = AsyncStream<[UInt8]> { continuation in
            OutputPump.start(
                [child.standardOutput!], name: "bench-cluster", onData: { _, bytes in continuation.yield(bytes) },
                onEnd: { continuation.finish() })
        }
        defer {
            // Closing stdin ends the cluster process; SIGTERM in case it is stuck.
            close(child.standardInput!)
            child.send(SIGTERM)
        }
        var bootstrap: String?
        var buffer: [UInt8] = []
        for await chunk in output {
            buffer += chunk
            for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") {
                if line.hasPrefix("bootstrap.servers=") { bootstrap = String(line.dropFirst(18)) }
                if line.hasPrefix("produced ") { print("cluster: \(line)") }
            }
            if bootstrap != nil { break }
        }
        guard bootstrap != nil else { throw ValidationError("the cluster process exited before printing its address") }
        try await measure(bootstrap: bootstrap!)
    }

    /// Child mode: the embedded cluster with the accounts topic filled, until stdin closes.
    private func serve() async throws {
        var logger = Logger(label: "bench.cluster")
        logger.logLevel = .error
        let cluster = try EmbeddedKafkaCluster(brokers: 1, logger: logger)
        let topics = TopicNames(prefix: topicPrefix)
        try cluster.createTopic(topics.accounts, partitions: partitions)
        try cluster.createTopic(topics.jobs, partitions: partitions)
        if statuses { try cluster.createTopic(topics.status, partitions: partitions) }
        try await produceAccounts(
            bootstrap: cluster.bootstrapServers, topic: topics.accounts, statusTopic: statuses ? topics.status : nil,
            logger: logger)
        print("bootstrap.servers=\(cluster.bootstrapServers)")
        fflush(nil)
        // Serve until the parent closes our stdin.
        let stdin = FileHandle.standardInput
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                _ = stdin.readDataToEndOfFile()
                continuation.resume()
            }
        }
        await cluster.close()
    }

    /// Accounts the `--statuses` fill marks needs_reauth for their record (every 20th): they get no jobs.
    var heldAccounts: Int { statuses ? (accounts + 19) / 20 : 0 }

    /// Fills `topic` with `accounts` account records (~450 bytes, a GitHub-sized sealed token pair each), and
    /// `statusTopic` with a status per account (every 20th `needs_reauth` naming its record's version).
    private func produceAccounts(
        bootstrap: String, topic: String, statusTopic: String? = nil, logger: Logger
    ) async throws {
        let started = ContinuousClock.now
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap), linger: .milliseconds(20),
                maxQueuedMessages: 1_000_000),
            logger: logger)
        let sealer = Sealer(current: .random(id: "bench"))
        // A realistic sealed config: GitHub-sized access and refresh tokens.
        let sealed = try sealer.seal([
            "access_token": .string("gho_" + String(repeating: "a", count: 36)),
            "refresh_token": .string("ghr_" + String(repeating: "b", count: 76)),
        ])
        let updatedAt = WireFormat.formatDate(Date())
        var batch: [ProducerRecord] = []
        for number in 0..<accounts {
            let id = "acct-\(number)"
            let value =
                "{\"data\":{\"accountId\":\"\(id)\",\"integration\":\"github\",\"sealedConfig\":{\"algorithm\":"
                + "\"AES-256-GCM\",\"ciphertext\":\"\(sealed.ciphertext)\",\"keyId\":\"bench\"},\"settings\":"
                + "{\"enabled\":true,\"schedule\":{\"frequency\":\"*/5 * * * *\"},\"username\":\"user\(number)\"},"
                + "\"updatedAt\":\"\(updatedAt)\"},\"type\":\"account\"}"
            batch.append(ProducerRecord(topic: topic, key: Array(id.utf8), value: Array(value.utf8)))
            if let statusTopic {
                let held = number % 20 == 0
                let status = AccountStatus(
                    accountId: id, integration: "github", status: held ? .needsReauth : .ok,
                    reason: held ? "GitHub rejected the access token (401)" : nil, at: Date(),
                    accountVersion: AccountVersion(recordBytes: Array(value.utf8)).description)
                batch.append(ProducerRecord(topic: statusTopic, key: Array(id.utf8), value: try status.messageBytes()))
            }
            if batch.count >= 50_000 {
                _ = try await producer.send(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { _ = try await producer.send(batch) }
        await producer.close(timeout: .seconds(30))
        print("produced \(accounts) accounts in \(ContinuousClock.now - started)")
    }

    /// Child mode with `--bootstrap`: creates the topics on that broker and fills the accounts topic unless it
    /// already holds `accounts` records.
    private func fillExternal(bootstrap: String) async throws {
        var logger = Logger(label: "bench.fill")
        logger.logLevel = .error
        let topics = TopicNames(prefix: topicPrefix)
        let kafka = KafkaConfiguration(bootstrapServers: bootstrap)
        let admin = try KafkaAdmin(configuration: kafka, logger: logger)
        try await admin.createTopics(
            [topics.accounts, topics.jobs].map { NewTopic(name: $0, partitions: partitions) }, timeout: .seconds(30))
        await admin.close()
        let probe = try KafkaConsumer(
            configuration: ConsumerConfiguration(kafka: kafka, groupId: "bench-fill-probe"), logger: logger)
        var held: Int64 = 0
        for partition in 0..<partitions {
            let marks = try await probe.watermarks(topic: topics.accounts, partition: partition, timeout: .seconds(30))
            held += marks.high - marks.low
        }
        await probe.close()
        if held >= accounts {
            print("the accounts topic already holds \(held) records; not producing")
            return
        }
        try await produceAccounts(bootstrap: bootstrap, topic: topics.accounts, logger: logger)
    }

    private func measure(bootstrap: String) async throws {
        var logger = Logger(label: "bench.scheduler")
        logger.logLevel = .warning
        // Accounts held for re-authentication fire nothing, neither on load nor in the burst.
        let firing = accounts - heldAccounts
        let stats = BenchStats(expectedCatchUps: firing)
        let clock = BenchClock()
        var configuration = SchedulerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: bootstrap),
            validator: AccountValidator(knownIntegrations: ["github"]))
        configuration.topics = TopicNames(prefix: topicPrefix)
        configuration.groupId = "bench-scheduler"
        configuration.sessionTimeout = .seconds(6)
        configuration.loadConcurrency = loadConcurrency
        configuration.maxInFlightBatches = maxInFlightBatches
        configuration.clock = { clock.now() }
        configuration.onPublished = { jobs, firedAt, acknowledgedAt in stats.record(jobs, firedAt, acknowledgedAt) }
        let service = SchedulerService(configuration: configuration, logger: logger)
        let rssBefore = Self.memory("VmRSS")
        let started = ContinuousClock.now
        let startedDate = Date()
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // Load: until every account is owned.
            while service.accountsOwned < accounts { try await Task.sleep(for: .milliseconds(50)) }
            let loaded = ContinuousClock.now - started
            let rssLoaded = Self.memory("VmRSS")
            // The peak so far: loading, with the catch-up jobs it fires meanwhile (the failover case when one
            // scheduler owns every partition), before the burst below adds its own.
            let peakLoading = Self.memory("VmHWM")
            print(
                "loaded \(accounts) accounts in \(loaded) (includes the ~3 s first group join)"
                    + (statuses ? "; \(heldAccounts) held for re-authentication" : ""))
            // Burst: one catch-up per account.
            while stats.catchUpsAcknowledged < firing { try await Task.sleep(for: .milliseconds(50)) }
            let catchUp = stats.catchUp()
            print(
                "catch-up while loading: \(firing) jobs published in \(String(format: "%.2f", catchUp.seconds)) s "
                    + "(first fire to last acknowledgement, paced by the load)")
            // Burst: jump the clock 5 minutes, so every account is due at once (as after a pause), and time the
            // publishing of one job per account.
            stats.startBurst()
            clock.jump(by: 300)
            while stats.burstAcknowledged < firing { try await Task.sleep(for: .milliseconds(20)) }
            let burst = stats.burst()
            print(
                "burst: \(firing) jobs published in \(String(format: "%.2f", burst.seconds)) s = "
                    + "\(Int(Double(firing) / burst.seconds)) jobs/s "
                    + "(all due at once; clock jump to last acknowledgement)"
            )
            // Let the clock-jumped schedule settle onto its next ticks before measuring the steady phase.
            try await Task.sleep(for: .seconds(2))
            // Steady phase.
            stats.startSteady()
            try await Task.sleep(for: .seconds(steadySeconds))
            let steady = stats.steady()
            let rssEnd = Self.memory("VmRSS")
            let peak = Self.memory("VmHWM")
            print(
                "steady: \(steady.count) jobs in \(steadySeconds) s = \(steady.count / max(1, steadySeconds)) jobs/s; "
                    + "schedule lag p50 \(steady.lagP50) ms, p99 \(steady.lagP99) ms, max \(steady.lagMax) ms; "
                    + "publish ack p99 \(steady.ackP99) ms")
            print(
                "RSS: before \(rssBefore / 1024) MB, loaded \(rssLoaded / 1024) MB (peak while loading "
                    + "\(peakLoading / 1024) MB), end \(rssEnd / 1024) MB, "
                    + "peak \(peak / 1024) MB")
            _ = startedDate
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// The scheduling core alone, no Kafka: how much memory the accounts themselves take.
    private func coreFootprint() throws {
        let before = Self.memory("VmRSS")
        let expression = try CronExpression("*/5 * * * *")
        var core = SchedulingCore()
        core.reserveCapacity(accounts)
        let started = ContinuousClock.now
        let now = Date()
        // Every record has a version; one account in 20 is held for re-authentication (50,000 of 1M), its status
        // read before its record as a scheduler loads them.
        let held = stride(from: 0, to: accounts, by: 20)
        for number in held {
            core.applyStatus(
                of: "acct-\(number)", holdingRecord: AccountVersion(rawValue: UInt64(number)),
                statusPartition: Int32(number % 128), now: now)
        }
        for number in 0..<accounts {
            core.upsert(
                ScheduledAccount(
                    accountId: "acct-\(number)", partition: Int32(number % 128), integration: "github",
                    schedule: expression, version: AccountVersion(rawValue: UInt64(number))),
                now: now)
        }
        print(
            "core only: \(accounts) accounts (\(core.heldAccounts["github"]?.needsReauth ?? 0) held for "
                + "re-authentication) "
                + "scheduled in \(ContinuousClock.now - started); RSS \(before / 1024) MB -> "
                + "\(Self.memory("VmRSS") / 1024) MB")
    }

    /// A `/proc/self/status` field in kB.
    static func memory(_ field: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
        return 0
    }
}

/// Wall clock plus an offset the benchmark can jump.
private final class BenchClock: Sendable {
    private let offset = Mutex<TimeInterval>(0)
    func now() -> Date { Date().addingTimeInterval(offset.withLock { $0 }) }
    func jump(by seconds: TimeInterval) { offset.withLock { $0 += seconds } }
}

/// Collects what the scheduler published, from its publishing tasks.
private final class BenchStats: Sendable {
    private struct State {
        var catchUps = 0
        var firstFire: Date?
        var lastCatchUpAck: Date?
        var lastBurstAck: Date?
        var steadyStarted = false
        var burstStarted = false
        var burstCount = 0
        var burstStart: Date?
        var lags: [Double] = []
        var acks: [Double] = []
    }

    private let state = Mutex(State())
    let expectedCatchUps: Int

    init(expectedCatchUps: Int) { self.expectedCatchUps = expectedCatchUps }

    func record(_ jobs: [DueJob], _ firedAt: Date, _ acknowledgedAt: Date) {
        state.withLock { state in
            if state.firstFire == nil { state.firstFire = firedAt }
            if state.burstStarted && !state.steadyStarted {
                state.burstCount += jobs.count
                state.lastBurstAck = Date()
                return
            }
            let catchUps = jobs.count(where: \.isCatchUp)
            state.catchUps += catchUps
            if catchUps > 0 { state.lastCatchUpAck = acknowledgedAt }
            guard state.steadyStarted else { return }
            let ack = acknowledgedAt.timeIntervalSince(firedAt) * 1000
            for job in jobs where !job.isCatchUp {
                state.lags.append(firedAt.timeIntervalSince(job.dueAt) * 1000)
                state.acks.append(ack)
            }
        }
    }

    var catchUpsAcknowledged: Int { state.withLock { $0.catchUps } }
    var burstAcknowledged: Int { state.withLock { $0.burstCount } }

    func startBurst() {
        state.withLock {
            $0.burstStarted = true
            $0.burstStart = Date()
        }
    }

    func catchUp() -> (seconds: Double, Void) {
        state.withLock { state in
            ((state.lastCatchUpAck ?? Date()).timeIntervalSince(state.firstFire ?? Date()), ())
        }
    }

    func burst() -> (seconds: Double, Void) {
        state.withLock { state in
            ((state.lastBurstAck ?? Date()).timeIntervalSince(state.burstStart ?? Date()), ())
        }
    }

    func startSteady() { state.withLock { $0.steadyStarted = true } }

    func steady() -> (count: Int, lagP50: String, lagP99: String, lagMax: String, ackP99: String) {
        state.withLock { state in
            let lags = state.lags.sorted()
            let acks = state.acks.sorted()
            func percentile(_ values: [Double], _ p: Double) -> String {
                guard !values.isEmpty else { return "n/a" }
                return String(format: "%.1f", values[min(values.count - 1, Int(Double(values.count) * p))])
            }
            return (
                lags.count, percentile(lags, 0.5), percentile(lags, 0.99), percentile(lags, 1.0), percentile(acks, 0.99)
            )
        }
    }
}
