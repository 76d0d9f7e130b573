import ActivitySyncTesting
import Foundation
import GitHubSimulator
import Kafka
import Logging
import Accounts
import Sealing
import Subprocesses
import SyncModel

/// The whole system for one test: an embedded Kafka cluster and a GitHub simulator in the test process, accounts
/// registered and sealed, and scheduler and worker *processes* of the built binary around them.
///
/// Everything the assertions look at is what a user would see: records a `read_committed` reader gets from the
/// topics, what the simulator says a correct poller must see, what processes print.
final class Pipeline: Sendable {
    /// The embedded cluster, or nil when the test runs against a real Kafka (`KAFKA_BOOTSTRAP_SERVERS`).
    let embedded: EmbeddedKafkaCluster?
    let bootstrapServers: String
    let simulator: GitHubSimulator
    let topics = TopicNames.default
    let partitions: Int32
    let keyFile: URL
    let sealer: Sealer
    let startedAt = Date()
    let schedule: String

    /// - Parameter realKafka: bootstrap servers of a real Kafka whose activity-sync topics exist (created by
    ///   `activity-sync topics create`) with `partitions` partitions; nil starts an embedded cluster.
    init(
        accounts: Int, brokers: Int = 1, partitions: Int32 = 6, schedule: String = "*/2 * * * * *",
        realKafka: String? = nil
    ) async throws {
        let logger = Logger(label: "activity-sync.test.pipeline")
        self.partitions = partitions
        self.schedule = schedule
        if let realKafka {
            embedded = nil
            bootstrapServers = realKafka
        } else {
            let cluster = try EmbeddedKafkaCluster(brokers: brokers, logger: logger)
            try cluster.createTopics(
                topics.all.map(\.name), partitions: partitions, replicationFactor: Int32(min(brokers, 3)))
            embedded = cluster
            bootstrapServers = cluster.bootstrapServers
        }
        var configuration = SimulatorConfiguration()
        // A real cluster keeps state between runs: fresh users (ids come from the seed) keep runs apart.
        configuration.seed = realKafka == nil ? 1 : UInt64.random(in: 1...UInt64(UInt32.max))
        configuration.users = accounts
        configuration.pollInterval = 1
        configuration.historyHours = 2
        configuration.historyItems = 8
        configuration.activityInterval = .seconds(4)
        configuration.latency = .milliseconds(5)
        // GitHub as it really behaves: threads re-bumped by new activity, events shown up to 3 s late.
        configuration.threadBumps = true
        configuration.eventLag = .seconds(3)
        simulator = GitHubSimulator(configuration: configuration, logger: logger)
        try await simulator.start()
        let key = SealingKey.random()
        sealer = Sealer(current: key)
        keyFile = FileManager.default.temporaryDirectory.appendingPathComponent(
            "activity-sync-e2e-\(UUID().uuidString).key")
        try Data((key.base64 + "\n").utf8).write(to: keyFile)
    }

    /// Publishes every simulated user as an account, as `accounts import` would.
    func registerAccounts() async throws { try await register(simulator.users) }

    /// Publishes these users' accounts with their current token pairs (again, after a reconnection).
    func register(_ users: [SimulatedUser]) async throws {
        let client = AccountsTopicClient(
            kafka: KafkaConfiguration(bootstrapServers: bootstrapServers), topics: topics,
            logger: Logger(label: "activity-sync.test.accounts"))
        try await client.put(
            users.map { user in
                AccountRecord(
                    accountId: String(user.id), integration: "github",
                    settings: AccountSettings(username: user.login, frequency: schedule),
                    sealedConfig: try sealer.seal(
                        ["access_token": .string(user.token), "refresh_token": .string(user.refreshToken)]),
                    updatedAt: Date())
            })
    }

    /// The newest status record of each of this run's accounts, by account id.
    func statuses() async throws -> [String: AccountStatus] {
        let accounts = Set(simulator.users.map { String($0.id) })
        var newest: [String: AccountStatus] = [:]
        for message in try await reader.readAll(topics.status, partitions: partitions) {
            guard let value = message.value,
                let status = try? WireFormat.decode(Envelope<AccountStatus>.self, from: value).data,
                accounts.contains(status.accountId)
            else { continue }
            newest[status.accountId] = status
        }
        return newest
    }

    var commonArguments: [String] { commonArguments(sessionTimeoutMs: 6000) }

    func commonArguments(sessionTimeoutMs: Int) -> [String] {
        [
            "--bootstrap", bootstrapServers, "--sealing-key-file", keyFile.path, "--session-timeout-ms",
            "\(sessionTimeoutMs)",
        ]
    }

    func startScheduler(_ id: String) throws -> ActivitySyncProcess {
        try ActivitySyncProcess(id, arguments: ["scheduler", "--id", id] + commonArguments)
    }

    func startWorker(_ id: String, delivery: String = "exactly-once", sessionTimeoutMs: Int = 6000) throws
        -> ActivitySyncProcess
    {
        try ActivitySyncProcess(
            id,
            arguments: [
                "worker", "--id", id, "--github-url", simulator.baseURL, "--delivery", delivery,
                "--commit-interval-ms", "200",
            ] + commonArguments(sessionTimeoutMs: sessionTimeoutMs))
    }

    var reader: TopicReader { TopicReader(bootstrapServers: bootstrapServers) }

    /// Every activity record of this run's accounts on the topic, in the order a reader sees them (repeats
    /// included).
    func activities() async throws -> [Activity] {
        let accounts = Set(simulator.users.map { String($0.id) })
        return try await reader.readAll(topics.activities, partitions: partitions).compactMap { message in
            guard let value = message.value else { return nil }
            let activity = try WireFormat.decode(Envelope<Activity>.self, from: value).data
            return accounts.contains(activity.accountId) ? activity : nil
        }
    }

    /// The ids polls up to `until` could see (the simulator's "versions a poll saw"): nothing else may be emitted.
    func truth(until: Date) throws -> Set<String> {
        try polledTruth(until: until).seen
    }

    /// What polls of this run's accounts up to `until` saw (`seen`) and what every correct poller must therefore
    /// have emitted (`required`: thread versions a 200 page delivered or that stayed current until the next listing,
    /// events a 200 page delivered). See the simulator's `Truth.swift`.
    func polledTruth(until: Date) throws -> (seen: Set<String>, required: Set<String>) {
        var seen = Set<String>()
        var required = Set<String>()
        for user in simulator.users {
            let truth = try simulator.polledTruth(
                login: user.login, from: startedAt.addingTimeInterval(-86_400), to: until)
            seen.formUnion(truth.seen.map(\.id))
            required.formUnion(truth.required.map(\.id))
        }
        return (seen, required)
    }

    /// Every account's superseded thread versions that a client can recover from the subject (the simulator's
    /// `recoverableVersionIds`).
    func recoverableVersionIds() throws -> Set<String> {
        var ids = Set<String>()
        for user in simulator.users { ids.formUnion(try simulator.recoverableVersionIds(login: user.login)) }
        return ids
    }

    /// The simulator's account of each missing notification version (see `explainThreadVersion`), for a failure
    /// message: which kind of version was lost says whether the client could have recovered it.
    func explain(missing ids: some Sequence<String>) throws -> [String] {
        var lines: [String] = []
        for id in ids {
            for user in simulator.users {
                if let text = try simulator.explainThreadVersion(login: user.login, activityId: id) {
                    lines.append(text)
                    break
                }
            }
        }
        return lines
    }

    /// Waits until everything polls saw up to `until` (for each account, up to its first listing at or after
    /// `until`, so a checkpoint before the first poll still covers the history) is on the activities topic.
    func waitForCompleteness(until: Date, timeout: Duration = .seconds(120)) async throws {
        var bounds: [String: Date] = [:]
        try await eventually("every account polled after the checkpoint", timeout: timeout, interval: .seconds(1)) {
            for user in simulator.users where bounds[user.login] == nil {
                bounds[user.login] = try simulator.listingTimes(login: user.login).first { $0 >= until }
            }
            return bounds.count == simulator.users.count
        }
        var expected = Set<String>()
        try await eventually("all expected activities committed", timeout: timeout, interval: .seconds(1)) {
            expected = []
            for user in simulator.users {
                let truth = try simulator.polledTruth(
                    login: user.login, from: startedAt.addingTimeInterval(-86_400), to: bounds[user.login] ?? until)
                expected.formUnion(truth.required.map(\.id))
            }
            let seen = Set(try await activities().map(\.id))
            return !expected.isEmpty && expected.isSubset(of: seen)
        }
    }

    /// The restore invariant of exactly-once, checked once the processes have stopped: for every account, the
    /// last state record on the state topic is the state after the last job the group committed for it — its
    /// `lastJob` is the newest regular tick among the account's jobs below its partition's committed offset.
    /// A worker that restored a stale state (stopped at the last stable offset) or wrote state outside the
    /// transaction of its offsets breaks this.
    /// - Returns: how many accounts had committed jobs to check, and one line per account that breaks it.
    /// - Parameter accounts: the accounts to check; nil checks the simulator's users.
    func stateInvariant(groupId: String = "activity-sync-workers", accounts only: Set<String>? = nil) async throws
        -> (checked: Int, violations: [String])
    {
        let logger = Logger(label: "activity-sync.test.invariant")
        let consumer = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrapServers), groupId: groupId),
            logger: logger)
        let committed = try await consumer.committed(
            (0..<partitions).map { TopicPartition(topic: topics.jobs, partition: $0) }, timeout: .seconds(30))
        await consumer.close()
        var position: [Int32: Int64] = [:]
        for entry in committed { position[entry.partition] = entry.offset }
        let accounts = only ?? Set(simulator.users.map { String($0.id) })
        // The newest regular tick per account among the jobs its partition's committed offset covers.
        var expected: [String: SyncJob] = [:]
        for message in try await reader.readAll(topics.jobs, partitions: partitions) {
            guard message.offset < position[message.partition, default: 0], let value = message.value,
                let job = try? WireFormat.decode(SyncJob.self, from: value), job.since == nil,
                accounts.contains(job.accountId)
            else { continue }
            if expected[job.accountId].map({ job.scheduledAt > $0.scheduledAt }) ?? true {
                expected[job.accountId] = job
            }
        }
        var latest: [String: StateRecord] = [:]
        for message in try await reader.readAll(topics.state, partitions: partitions) {
            guard let key = message.key.map({ String(decoding: $0, as: UTF8.self) }), accounts.contains(key) else {
                continue
            }
            latest[key] = try message.value.map { try WireFormat.decode(StateRecord.self, from: $0) }
        }
        var violations: [String] = []
        for (account, job) in expected.sorted(by: { $0.key < $1.key }) {
            let lastJob = latest[account]?.lastJob
            if lastJob?.jobId != job.jobId {
                violations.append(
                    "account \(account): last committed job \(job.jobId), state says \(lastJob?.jobId ?? "no state")")
            }
        }
        return (expected.count, violations)
    }

    /// Run records against the jobs the group's committed offsets cover: each consumed job of this run's accounts
    /// (by partition and offset) has exactly one run record, as a read_committed reader sees them — none for aborted
    /// work, none twice. Meaningful on a broker with real transactions, once everything stopped.
    func runRecordInvariant(groupId: String = "activity-sync-workers") async throws
        -> (checked: Int, missing: [String], repeated: [String])
    {
        let consumer = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrapServers), groupId: groupId),
            logger: Logger(label: "activity-sync.test.runs"))
        let committed = try await consumer.committed(
            (0..<partitions).map { TopicPartition(topic: topics.jobs, partition: $0) }, timeout: .seconds(30))
        await consumer.close()
        var position: [Int32: Int64] = [:]
        for entry in committed { position[entry.partition] = entry.offset }
        let accounts = Set(simulator.users.map { String($0.id) })
        var consumed: Set<String> = []
        for message in try await reader.readAll(topics.jobs, partitions: partitions)
        where message.offset < position[message.partition, default: 0]
            && message.key.map({ accounts.contains(String(decoding: $0, as: UTF8.self)) }) == true
        {
            consumed.insert("\(message.partition)@\(message.offset)")
        }
        var seen: [String: Int] = [:]
        for message in try await reader.readAll(topics.runs, partitions: partitions) {
            guard let value = message.value, let run = try? RunRecord.decodeMessage(value),
                let account = run.accountId, accounts.contains(account)
            else { continue }
            seen["\(run.partition)@\(run.offset)", default: 0] += 1
        }
        let missing = consumed.filter { seen[$0] == nil }.sorted()
        let repeated = seen.filter { $0.value > 1 }.keys.sorted()
        return (consumed.count, missing, repeated)
    }

    /// Every token the simulator issued (access and refresh), for secret scans.
    var secrets: [String] { simulator.users.flatMap { [$0.token, $0.refreshToken] } }

    /// Raw bytes of every record (key, value, headers) of every topic.
    func rawTopicBytes() async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for spec in topics.all {
            for message in try await TopicReader(bootstrapServers: bootstrapServers, isolationLevel: .readUncommitted)
                .readAll(spec.name, partitions: partitions)
            {
                bytes += message.key ?? []
                bytes += message.value ?? []
                for header in message.headers { bytes += Array(header.key.utf8) + (header.value ?? []) }
            }
        }
        return bytes
    }

    /// Validates every record on every topic against docs/schemas with scripts/validate-records.py.
    /// - Returns: the validator's exit status and output.
    func validateRecordsAgainstSchemas() async throws -> (status: Int32, output: String) {
        var lines: [String] = []
        for spec in topics.all {
            for message in try await reader.readAll(spec.name, partitions: partitions) {
                var line: [String: Any] = [
                    "topic": spec.name, "where": "\(spec.name)/\(message.partition)@\(message.offset)",
                ]
                line["key"] = message.key.map { String(decoding: $0, as: UTF8.self) }
                line["valueText"] = message.value.map { String(decoding: $0, as: UTF8.self) } ?? NSNull()
                line["headers"] = message.headers.map {
                    [$0.key, $0.value.map { String(decoding: $0, as: UTF8.self) } ?? ""]
                }
                lines.append(String(decoding: try JSONSerialization.data(withJSONObject: line), as: UTF8.self))
            }
        }
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("records-\(UUID().uuidString).jsonl")
        try lines.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: input) }
        let output = try await ChildProcess.run(
            ChildProcess.Configuration(
                executable: "python3",
                arguments: [
                    RepoPaths.root.appendingPathComponent("scripts/validate-records.py").path,
                    RepoPaths.root.appendingPathComponent("docs/schemas").path, input.path,
                ]))
        return (output.termination.status, output.text)
    }

    func shutdown(_ processes: [ActivitySyncProcess]) async {
        for process in processes { _ = await process.stop(grace: .seconds(20)) }
        await simulator.stop()
        await embedded?.close()
        try? FileManager.default.removeItem(at: keyFile)
    }
}

extension Array where Element == UInt8 {
    func contains(_ needle: String) -> Bool {
        let pattern = Array(needle.utf8)
        guard !pattern.isEmpty, count >= pattern.count else { return false }
        for start in 0...(count - pattern.count) where self[start] == pattern[0] {
            if Array(self[start..<(start + pattern.count)]) == pattern { return true }
        }
        return false
    }
}
