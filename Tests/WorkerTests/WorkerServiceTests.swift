import ActivitySyncTesting
import Foundation
import IntegrationCatalog
import Kafka
import Logging
import SyncModel
import Testing
@testable import Worker

/// An integration whose output depends only on the state it is given: the k-th sync of an account emits
/// `fake:{account}:{k}`. So the set of ids on the activities topic tells whether state was threaded correctly
/// and nothing was lost or invented.
struct CountingIntegration: Integration {
    let key = "github"
    func spec() -> JSONValue { [:] }
    func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        AccountSetup(accountId: "", config: [:], settings: [:])
    }
    func sync(_ request: SyncRequest) async throws -> SyncOutcome {
        let k = (request.state?["calls"]?.intValue ?? 0) + 1
        let activity = Activity(
            text: "activity \(k)", sourceURL: "https://github.com/o/r/issues/\(k)",
            id: "fake:\(request.accountId):\(k)",
            occurredAt: Date(timeIntervalSince1970: 1_800_000_000 + Double(k)), kind: "assign",
            accountId: request.accountId)
        return SyncOutcome(activities: [activity], state: ["calls": .number(Double(k))])
    }
}

/// ``CountingIntegration`` with one account that takes `delay` per sync: a slow job at its partition's head.
struct SlowAccountIntegration: Integration {
    let key = "github"
    /// The account whose syncs take `delay`; nil: every account's.
    let slow: String?
    let delay: Duration
    func spec() -> JSONValue { [:] }
    func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        AccountSetup(accountId: "", config: [:], settings: [:])
    }
    func sync(_ request: SyncRequest) async throws -> SyncOutcome {
        if slow == nil || request.accountId == slow { try await Task.sleep(for: delay) }
        return try await CountingIntegration().sync(request)
    }
}

/// Refreshes the pair on its first sync (storing it through the worker's hook, as GitHub's integration does) and
/// then hangs until cancelled; later syncs succeed. Records the config each sync got.
final class RefreshThenHangIntegration: Integration, @unchecked Sendable {
    // @unchecked: the fields are only touched under `lock`.
    let key = "github"
    private let lock = NSLock()
    private var seen: [JSONValue] = []
    private var hung = false

    var configs: [JSONValue] { lock.withLock { seen } }
    var hanging: Bool { lock.withLock { hung } }

    func spec() -> JSONValue { [:] }
    func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        AccountSetup(accountId: "", config: [:], settings: [:])
    }

    func sync(_ request: SyncRequest) async throws -> SyncOutcome {
        let first = lock.withLock {
            seen.append(request.config)
            return seen.count == 1
        }
        guard first else { return try await CountingIntegration().sync(request) }
        let refreshed: JSONValue = ["access_token": "tok-2", "refresh_token": "ref-2"]
        try await request.saveRefreshedConfig?(refreshed)
        lock.withLock { hung = true }
        try await Task.sleep(for: .seconds(600))
        return SyncOutcome(activities: [], state: [:], updatedConfig: refreshed)
    }
}

/// Hangs on `account`'s syncs until cancelled, and says when that happened; other accounts sync at once.
final class HangingIntegration: Integration, @unchecked Sendable {
    // @unchecked: the flags are only touched under `lock`.
    let key = "github"
    let account: String
    private let lock = NSLock()
    private var flags = (started: false, cancelled: false)

    init(account: String) { self.account = account }

    var started: Bool { lock.withLock { flags.started } }
    var cancelled: Bool { lock.withLock { flags.cancelled } }

    func spec() -> JSONValue { [:] }
    func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        AccountSetup(accountId: "", config: [:], settings: [:])
    }

    func sync(_ request: SyncRequest) async throws -> SyncOutcome {
        guard request.accountId == account else { return try await CountingIntegration().sync(request) }
        lock.withLock { flags.started = true }
        do {
            try await Task.sleep(for: .seconds(600))
        } catch {
            lock.withLock { flags.cancelled = true }
            throw error
        }
        return SyncOutcome(activities: [], state: [:])
    }
}

/// One embedded cluster with activity-sync's topics under a unique prefix.
struct WorkerHarness {
    let kafkaTopics: EmbeddedTopics
    let logs = CapturedLogs()
    let sealer = FakeSealer()

    init() throws {
        kafkaTopics = try EmbeddedTopics(partitions: 4)
    }

    var cluster: EmbeddedKafkaCluster { kafkaTopics.cluster }
    var topics: TopicNames { kafkaTopics.topics }
    var partitions: Int32 { kafkaTopics.partitions }

    /// The jobs (and state, accounts) partition of `account`: where its records go by key.
    func partition(of account: String) -> Int32 {
        KeyPartitioner.murmur2(Array(account.utf8), partitionCount: partitions)
    }

    func token(_ account: String) -> String { "tok-secret-\(account)" }

    func job(_ account: String, tick: Int) throws -> SyncJob {
        SyncJob(
            accountId: account, integration: "github",
            scheduledAt: Date(
                timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 3600
                    + Double(tick) * 60))
    }

    /// The account record a worker reads for `account`'s jobs: its token sealed, as `accounts add` writes it.
    func account(_ account: String, config: JSONValue? = nil, integration: String = "github") throws -> AccountRecord {
        AccountRecord(
            accountId: account, integration: integration, settings: AccountSettings(),
            sealedConfig: try sealer.seal(config ?? ["access_token": .string(token(account))]), updatedAt: Date())
    }

    /// An account sealed by another sealer (the real one, for GitHub tests).
    func account(_ account: String, sealed: SealedConfig, integration: String = "github") -> AccountRecord {
        AccountRecord(
            accountId: account, integration: integration, settings: AccountSettings(), sealedConfig: sealed,
            updatedAt: Date())
    }

    /// Writes account records to the accounts topic (keyed by id, murmur2: the partition of the account's jobs).
    func register(_ records: [AccountRecord]) async throws {
        try await kafkaTopics.produce(
            try records.map {
                ProducerRecord(topic: topics.accounts, key: Array($0.accountId.utf8), value: try $0.messageBytes())
            })
    }

    /// Publishes job records; by default the accounts their keys name are registered first (with ``account(_:config:integration:)``),
    /// as they would be in a deployment.
    func publish(_ records: [(key: String?, value: [UInt8]?)], registeringAccounts: Bool = true) async throws {
        if registeringAccounts {
            let ids = Set(records.compactMap(\.key).filter { !$0.isEmpty })
            try await register(try ids.sorted().map { try account($0) })
        }
        try await kafkaTopics.produce(
            records.map { ProducerRecord(topic: topics.jobs, key: $0.key.map { Array($0.utf8) }, value: $0.value) })
    }

    func configuration(delivery: DeliveryMode, id: String = "w1") -> WorkerConfiguration {
        var configuration = WorkerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), workerId: id)
        configuration.topics = topics
        configuration.groupId = "\(topics.jobs)-workers"
        configuration.delivery = delivery
        configuration.commitInterval = .milliseconds(50)
        configuration.sessionTimeout = .seconds(6)
        configuration.concurrency = 8
        // These tests count on every tick running (CountingIntegration's ids number its calls); coalescing a
        // backlog is shown by its own test.
        configuration.coalesceBacklog = false
        return configuration
    }

    /// The run records on the runs topic, as a read_committed reader sees them.
    func runs() async throws -> [RunRecord] {
        try await read(topics.runs).compactMap { $0.value.flatMap { try? RunRecord.decodeMessage($0) } }
    }

    func worker(_ configuration: WorkerConfiguration) -> WorkerService {
        WorkerService(
            configuration: configuration, integrations: IntegrationRegistry([CountingIntegration()]), sealer: sealer,
            logger: logs.logger)
    }

    func read(_ topic: String) async throws -> [ConsumerMessage] { try await kafkaTopics.read(topic) }

    func activityIds() async throws -> [String] {
        try await read(topics.activities).compactMap { message in
            message.header("ce_id").map { String(decoding: $0, as: UTF8.self) }
        }
    }

    func expectedIds(accounts: [String], ticks: Int) -> Set<String> {
        Set(accounts.flatMap { account in (1...ticks).map { "fake:\(account):\($0)" } })
    }
}

@Suite(.serialized) struct WorkerServiceTests {
    /// Jobs for `accounts`, `ticks` each, each tick published twice (a duplicate fire).
    func jobRecords(_ harness: WorkerHarness, accounts: [String], ticks: Int) throws -> [(
        key: String?, value: [UInt8]?
    )] {
        var records: [(key: String?, value: [UInt8]?)] = []
        for tick in 1...ticks {
            for account in accounts {
                let bytes = try WireFormat.encode(try harness.job(account, tick: tick))
                records.append((account, bytes))
                records.append((account, bytes))
            }
        }
        return records
    }

    func runWorker(
        _ harness: WorkerHarness, delivery: DeliveryMode, accounts: [String], ticks: Int,
        extra: [(key: String?, value: [UInt8]?)] = [], before: (() throws -> Void)? = nil
    ) async throws -> (ids: [String], worker: WorkerService) {
        // The accounts the extra records name are the test's to register.
        try await harness.register(try accounts.map { try harness.account($0) })
        try await harness.publish(
            try jobRecords(harness, accounts: accounts, ticks: ticks) + extra, registeringAccounts: false)
        try before?()
        let worker = harness.worker(harness.configuration(delivery: delivery))
        let run = Task { try await worker.run() }
        let expected = harness.expectedIds(accounts: accounts, ticks: ticks)
        let done = try await eventuallyHolds { Set(try await harness.activityIds()).isSuperset(of: expected) }
        worker.beginShutdown()
        try await run.value
        #expect(done, "all expected activities appeared")
        return (try await harness.activityIds(), worker)
    }

    @Test(.timeLimit(.minutes(2)), arguments: [DeliveryMode.atLeastOnce, .exactlyOnce])
    func theActivitiesTopicHoldsExactlyTheExpectedIds(delivery: DeliveryMode) async throws {
        let harness = try WorkerHarness()
        let accounts = (1...12).map { "acct-\($0)" }
        let (ids, worker) = try await runWorker(harness, delivery: delivery, accounts: accounts, ticks: 3)
        #expect(Set(ids) == harness.expectedIds(accounts: accounts, ticks: 3), "none missing, none invented")
        #expect(ids.count == Set(ids).count, "no repeats without failures (duplicate fires skipped)")
        #expect(worker.transactionCounts.commits > 0)
        // One run record per consumed job: each tick ran once and its duplicate fire was skipped.
        let runs = try await harness.runs()
        #expect(runs.count == accounts.count * 3 * 2, "\(runs.count) run records")
        for account in accounts {
            let mine = runs.filter { $0.accountId == account }
            #expect(Set(mine.filter { $0.outcome == .succeeded }.compactMap(\.jobId)).count == 3, "each tick ran once")
            #expect(Set(mine.compactMap(\.jobId)).count == 3)
            #expect(mine.filter { $0.outcome == .skipped }.count == 3)
        }
        // Per account, activities appear in order: the jobs of one account ran one after another.
        let activities = try await harness.read(harness.topics.activities)
        var lastK: [String: Int] = [:]
        for message in activities {
            let id = String(decoding: message.header("ce_id") ?? [], as: UTF8.self)
            let parts = id.split(separator: ":")
            let account = String(parts[1])
            let k = Int(parts[2])!
            #expect(k == (lastK[account] ?? 0) + 1, "account \(account) out of order")
            lastK[account] = k
        }
        let states = try await harness.read(harness.topics.state)
        #expect(Set(states.compactMap { $0.key.map { String(decoding: $0, as: UTF8.self) } }) == Set(accounts))
    }

    @Test(.timeLimit(.minutes(2)))
    func poisonJobsGoToTheDeadLetterTopicWithTheirReasonAndTheWorkerKeepsGoing() async throws {
        let harness = try WorkerHarness()
        let accounts = ["acct-1", "acct-2"]
        let poison = try PoisonJobs.all().filter { $0.0 != .tooLarge }.map { (key: $0.1, value: $0.2) }
        let accountPoisons = try PoisonJobs.accountPoisons()
        let expectedKinds = Set(try PoisonJobs.all().filter { $0.0 != .tooLarge }.map(\.0.rawValue))
            .union(accountPoisons.map(\.0.rawValue))
        // Poison first. Not every poison job shares a partition with the good ones (a mismatched or missing key
        // lands anywhere), so the run ends when both the activities and every dead letter are there. The accounts
        // whose records make their jobs poison are written as they are (one is never written).
        try await harness.register(accountPoisons.compactMap(\.1))
        try await harness.publish(poison, registeringAccounts: false)
        try await harness.publish(
            try accountPoisons.map { (key: $0.2.accountId, value: try WireFormat.encode($0.2)) },
            registeringAccounts: false)
        try await harness.publish(try jobRecords(harness, accounts: accounts, ticks: 2))
        let worker = harness.worker(harness.configuration(delivery: .atLeastOnce))
        let run = Task { try await worker.run() }
        func codes() async throws -> Set<String> {
            Set(
                try await harness.read(harness.topics.deadLetters).compactMap {
                    $0.header(DeadLetterHeader.code).map { String(decoding: $0, as: UTF8.self) }
                })
        }
        let expected = harness.expectedIds(accounts: accounts, ticks: 2)
        let done = try await eventuallyHolds {
            let ids = Set(try await harness.activityIds())
            return try await codes() == expectedKinds && ids.isSuperset(of: expected)
        }
        worker.beginShutdown()
        try await run.value
        #expect(done, "every activity and every dead letter arrived")
        #expect(Set(try await harness.activityIds()) == expected)
        let letters = try await harness.read(harness.topics.deadLetters)
        let codes = try await codes()
        #expect(codes == expectedKinds)
        #expect(codes.count >= 10)
        for letter in letters {
            #expect(letter.header(DeadLetterHeader.reason).map { !$0.isEmpty } == true)
            #expect(letter.header(DeadLetterHeader.originalOffset) != nil)
        }
    }

    /// A backlog after an outage: 12 ticks of each account wait in the jobs topic when the worker starts. Each
    /// account runs at most twice (the first tick it meets, then the newest: the backlog is read in milliseconds
    /// while the first sync runs), every other tick is committed as `coalesced`, and every job has exactly one run
    /// record.
    @Test("a worker back after 12 ticks runs each account at most twice and records every job", .timeLimit(.minutes(2)))
    func aBacklogIsCoalescedAndEveryJobRecorded() async throws {
        let harness = try WorkerHarness()
        let accounts = ["acct-1", "acct-2", "acct-3"]
        // Made once: a job's tick follows the clock's minute.
        let jobs = try Dictionary(
            uniqueKeysWithValues: accounts.map { account in
                (account, try (1...12).map { try harness.job(account, tick: $0) })
            })
        try await harness.publish(
            try (0..<12).flatMap { tick in
                try accounts.map { ($0, try WireFormat.encode(jobs[$0]![tick])) as (String?, [UInt8]?) }
            })
        var configuration = harness.configuration(delivery: .exactlyOnce)
        configuration.coalesceBacklog = true
        // A sync takes a moment, as a real one does (GitHub: hundreds of milliseconds).
        let worker = WorkerService(
            configuration: configuration,
            integrations: IntegrationRegistry([SlowAccountIntegration(slow: nil, delay: .milliseconds(300))]),
            sealer: harness.sealer, logger: harness.logs.logger)
        let run = Task { try await worker.run() }
        let recorded = try await eventuallyHolds { try await harness.runs().count >= 36 }
        worker.beginShutdown()
        try await run.value
        #expect(recorded, "a run record for every job")
        let runs = try await harness.runs()
        #expect(runs.count == 36)
        for account in accounts {
            let mine = runs.filter { $0.accountId == account }
            let jobIds = Set(jobs[account]!.map(\.jobId))
            #expect(Set(mine.compactMap(\.jobId)) == jobIds, "each job of \(account) recorded once")
            let real = mine.filter { $0.outcome == .succeeded }
            #expect((1...2).contains(real.count), "\(account) ran \(real.count) times")
            #expect(real.map(\.jobId).contains(jobs[account]!.last!.jobId), "the newest tick ran")
            #expect(mine.filter { $0.outcome == .coalesced }.count == 12 - real.count)
            #expect(mine.filter { $0.outcome == .coalesced }.allSatisfy { $0.reason?.contains("superseded") == true })
        }
        let activities = try await harness.activityIds()
        for account in accounts {
            #expect(activities.filter { $0.hasPrefix("fake:\(account):") }.count <= 2)
        }
    }

    /// The co-partitioned join: jobs carry no config, so a job runs with its account's record as it is when the job
    /// runs — here written a moment before the job, which the worker must read before running it.
    @Test("a job whose account record changed since the last job runs with the new config", .timeLimit(.minutes(2)))
    func aJobRunsWithTheAccountsCurrentRecord() async throws {
        let harness = try WorkerHarness()
        let integration = FakeIntegration()
        let worker = WorkerService(
            configuration: harness.configuration(delivery: .exactlyOnce),
            integrations: IntegrationRegistry([integration]),
            sealer: harness.sealer, logger: harness.logs.logger)
        try await harness.register([try harness.account("acct-1", config: ["access_token": "tok-old"])])
        try await harness.publish(
            [("acct-1", try WireFormat.encode(try harness.job("acct-1", tick: 1)))], registeringAccounts: false)
        let run = Task { try await worker.run() }
        let first = try await eventuallyHolds { integration.calls.count == 1 }
        // Reconnected: a new token, and at once the next job.
        try await harness.register([try harness.account("acct-1", config: ["access_token": "tok-new"])])
        try await harness.publish(
            [("acct-1", try WireFormat.encode(try harness.job("acct-1", tick: 2)))], registeringAccounts: false)
        let second = try await eventuallyHolds { integration.calls.count == 2 }
        worker.beginShutdown()
        try await run.value
        #expect(first && second, "both jobs ran")
        #expect(integration.calls.map { $0.config["access_token"]?.stringValue } == ["tok-old", "tok-new"])
        #expect(try await harness.read(harness.topics.deadLetters).isEmpty)
    }

    /// A sync refreshes the account's pair (invalidating the old one), then its worker stops before the job's output
    /// is committed. The pair was stored before the sync used it, so the job's re-run — by the next worker — starts
    /// with the new pair, not with the dead one from the account record.
    @Test(
        "a pair refreshed by a job that never commits is stored before use: the re-run has it", .timeLimit(.minutes(2)))
    func aRefreshedPairSurvivesAJobThatNeverCommits() async throws {
        let harness = try WorkerHarness()
        let integration = RefreshThenHangIntegration()
        try await harness.register([
            try harness.account("acct-1", config: ["access_token": "tok-1", "refresh_token": "ref-1"])
        ])
        try await harness.publish(
            [("acct-1", try WireFormat.encode(try harness.job("acct-1", tick: 1)))], registeringAccounts: false)
        var configuration = harness.configuration(delivery: .exactlyOnce)
        configuration.shutdownDeadline = .seconds(1)
        let first = WorkerService(
            configuration: configuration, integrations: IntegrationRegistry([integration]), sealer: harness.sealer,
            logger: harness.logs.logger)
        let firstRun = Task { try await first.run() }
        #expect(try await eventuallyHolds { integration.hanging })
        first.beginShutdown()
        try await firstRun.value
        #expect(try await harness.activityIds().isEmpty, "the refreshing job committed nothing")
        let second = WorkerService(
            configuration: configuration, integrations: IntegrationRegistry([integration]), sealer: harness.sealer,
            logger: harness.logs.logger)
        let secondRun = Task { try await second.run() }
        let reran = try await eventuallyHolds { integration.configs.count >= 2 }
        second.beginShutdown()
        try await secondRun.value
        #expect(reran, "the job ran again")
        #expect(integration.configs.map { $0["access_token"]?.stringValue } == ["tok-1", "tok-2"])
        #expect(integration.configs.last?["refresh_token"]?.stringValue == "ref-2")
        #expect(harness.logs.contains("a refreshed token pair was stored before use"))
    }

    /// A job still running at the revocation deadline is cancelled, not left running for partitions that are
    /// someone else's (still calling GitHub with the account's token); the handover then goes on.
    @Test("a revocation cancels jobs still running at its deadline", .timeLimit(.minutes(2)))
    func aRevocationCancelsJobsStillRunningAtItsDeadline() async throws {
        let harness = try WorkerHarness()
        let integration = HangingIntegration(account: "acct-slow")
        try await harness.publish(
            [("acct-slow", try WireFormat.encode(try harness.job("acct-slow", tick: 1)))])
        var configuration = harness.configuration(delivery: .exactlyOnce)
        configuration.revocationDeadline = .seconds(1)
        let first = WorkerService(
            configuration: configuration, integrations: IntegrationRegistry([integration]), sealer: harness.sealer,
            logger: harness.logs.logger)
        let firstRun = Task { try await first.run() }
        #expect(try await eventuallyHolds { integration.started })
        // A second member: the rebalance revokes the first one's partitions (eager assignor).
        let second = WorkerService(
            configuration: harness.configuration(delivery: .exactlyOnce, id: "w2"),
            integrations: IntegrationRegistry([integration]), sealer: harness.sealer, logger: harness.logs.logger)
        let secondRun = Task { try await second.run() }
        let cancelled = try await eventuallyHolds(within: .seconds(30)) { integration.cancelled }
        first.beginShutdown()
        second.beginShutdown()
        try await firstRun.value
        try await secondRun.value
        #expect(cancelled, "the hanging sync was cancelled by the revocation")
        #expect(harness.logs.contains("jobs still running at the revocation deadline were cancelled"))
    }

    @Test(
        "a valid job in a partition its account does not hash to is dead-lettered as wrong_partition, not run",
        .timeLimit(.minutes(2)))
    func aJobInTheWrongPartitionIsDeadLetteredNotRun() async throws {
        let harness = try WorkerHarness()
        let home = harness.partition(of: "acct-9")
        let elsewhere = (home + 1) % harness.partitions
        // What an external producer with its own partitioner does: the right key, another partition.
        try await harness.kafkaTopics.produce([
            ProducerRecord(
                topic: harness.topics.jobs, partition: elsewhere, key: Array("acct-9".utf8),
                value: try WireFormat.encode(try harness.job("acct-9", tick: 1)))
        ])
        try await harness.publish(try jobRecords(harness, accounts: ["acct-1", "acct-2"], ticks: 1))
        let worker = harness.worker(harness.configuration(delivery: .atLeastOnce))
        let run = Task { try await worker.run() }
        // Until the good jobs' activities and the letter are there: the misplaced job's partition may hold no
        // good job, so the activities alone do not say it was read.
        let expected = harness.expectedIds(accounts: ["acct-1", "acct-2"], ticks: 1)
        let done = try await eventuallyHolds {
            let ids = Set(try await harness.activityIds())
            return try await !harness.read(harness.topics.deadLetters).isEmpty && ids.isSuperset(of: expected)
        }
        worker.beginShutdown()
        try await run.value
        #expect(done, "the good jobs ran and a dead letter was written")
        let ids = try await harness.activityIds()
        #expect(!ids.contains { $0.hasPrefix("fake:acct-9:") }, "the misplaced job must not run")
        let letters = try await harness.read(harness.topics.deadLetters)
        let codes = letters.compactMap { $0.header(DeadLetterHeader.code).map { String(decoding: $0, as: UTF8.self) } }
        #expect(codes == ["wrong_partition"])
        let reason = letters.first?.header(DeadLetterHeader.reason).map { String(decoding: $0, as: UTF8.self) } ?? ""
        #expect(reason.contains("belongs in jobs partition \(home)"), "\(reason)")
    }

    @Test(
        "a slow job at a partition's head pauses that partition once it holds the limit, and nothing is lost",
        .timeLimit(.minutes(2)))
    func aSlowHeadPausesItsPartitionAndEverythingArrives() async throws {
        let harness = try WorkerHarness()
        let home = harness.partition(of: "slow")
        // Accounts in the slow one's partition, so their jobs sit behind it.
        let behind = (1...200).map { "acct-\($0)" }
            .filter { harness.partition(of: $0) == home }.prefix(12)
        try await harness.publish(try jobRecords(harness, accounts: ["slow"] + behind, ticks: 1))
        var configuration = harness.configuration(delivery: .atLeastOnce)
        configuration.maxUncommittedJobsPerPartition = 4
        let worker = WorkerService(
            configuration: configuration,
            integrations: IntegrationRegistry([SlowAccountIntegration(slow: "slow", delay: .seconds(3))]),
            sealer: harness.sealer, logger: harness.logs.logger)
        let run = Task { try await worker.run() }
        let expected = harness.expectedIds(accounts: ["slow"] + behind, ticks: 1)
        let done = try await eventuallyHolds(within: .seconds(60)) {
            // The resume follows the commit, which follows the records a reader sees: wait for it too.
            Set(try await harness.activityIds()).isSuperset(of: expected) && harness.logs.contains("partitions resumed")
        }
        worker.beginShutdown()
        try await run.value
        #expect(done, "every activity arrived")
        let ids = try await harness.activityIds()
        #expect(ids.count == Set(ids).count, "none repeated")
        let lines = harness.logs.all
        #expect(
            lines.contains { $0.contains("partitions paused") && $0.contains("[\(home)]") },
            "the slow head paused its partition")
        #expect(lines.contains { $0.contains("partitions resumed") })
    }

    @Test(.timeLimit(.minutes(2)))
    func abortedTransactionsAreRetriedAndTheSetOfIdsStaysExact() async throws {
        let harness = try WorkerHarness()
        let accounts = (1...6).map { "acct-\($0)" }
        // TxnOffsetCommit (28) fails with UNKNOWN_MEMBER_ID, EndTxn (26) with NOT_COORDINATOR: abort and retry.
        let (ids, worker) = try await runWorker(harness, delivery: .exactlyOnce, accounts: accounts, ticks: 2) {
            try harness.cluster.pushRequestErrors(apiKey: 28, errors: [25, 25])
            try harness.cluster.pushRequestErrors(apiKey: 26, errors: [16])
        }
        #expect(Set(ids) == harness.expectedIds(accounts: accounts, ticks: 2))
        // The mock shows aborted records too; any repeat must carry an already-seen id.
        #expect(worker.transactionCounts.aborts >= 1, "the injected errors caused aborts")
        print("aborts=\(worker.transactionCounts.aborts) records=\(ids.count) distinct=\(Set(ids).count)")
    }

    /// What a broker restart does to a static member's in-flight batch: its offsets carry the member id from before
    /// the consumer rejoined, and the group coordinator answers FENCED_INSTANCE_ID — abortable, since nothing else
    /// has the id. The worker must abort that batch and go on, not stop as if another worker took its id over.
    @Test(.timeLimit(.minutes(2)))
    func anAbortableFencedInstanceIdOnTheOffsetCommitDoesNotStopTheWorker() async throws {
        let harness = try WorkerHarness()
        let accounts = (1...6).map { "acct-\($0)" }
        // TxnOffsetCommit (28) fails with FENCED_INSTANCE_ID (82) twice.
        let (ids, worker) = try await runWorker(harness, delivery: .exactlyOnce, accounts: accounts, ticks: 2) {
            try harness.cluster.pushRequestErrors(apiKey: 28, errors: [82, 82])
        }
        #expect(Set(ids) == harness.expectedIds(accounts: accounts, ticks: 2))
        #expect(worker.transactionCounts.aborts >= 1, "the injected errors caused aborts")
    }

    /// The broker bumps a producer's epoch itself when it aborts a transaction (after transaction.timeout.ms, or for
    /// every transaction open when it crashed). With no other process on the id — the consumer was not fenced — the
    /// worker takes the id back with a new producer and writes the batch again, instead of exiting as if another
    /// worker had taken over. (A real second process is shown on a real broker: BrokerRestartTests.)
    @Test(.timeLimit(.minutes(2)))
    func aProducerEpochTheBrokerRejectedWithNoOtherProcessIsTakenBack() async throws {
        let harness = try WorkerHarness()
        let accounts = ["acct-1", "acct-2"]
        let (ids, worker) = try await runWorker(harness, delivery: .exactlyOnce, accounts: accounts, ticks: 2) {
            try harness.cluster.pushRequestErrors(apiKey: 26, errors: [90])  // EndTxn: PRODUCER_FENCED
        }
        #expect(Set(ids) == harness.expectedIds(accounts: accounts, ticks: 2))
        #expect(worker.transactionCounts.aborts >= 1, "the rejected epoch aborted a batch")
        #expect(harness.logs.contains("transactions re-initialised under the same id"))
    }

    /// librdkafka makes a consumer's FENCED_INSTANCE_ID fatal whatever caused it. After a broker restart it is most
    /// often the consumer's own rejoin under its group.instance.id, and it can come long after the partitions were
    /// lost (kfake, issue 16: 15 s into a revocation). With no other process on the id, the worker replaces its
    /// consumer and goes on, however long ago its last loss was. (A real second process: BrokerRestartTests.)
    @Test(.timeLimit(.minutes(2)))
    func aFatalFencedInstanceIdWithNoOtherProcessOnTheIdDoesNotStopTheWorker() async throws {
        let harness = try WorkerHarness()
        let accounts = ["acct-1", "acct-2"]
        try await harness.publish(try accounts.map { ($0, try WireFormat.encode(try harness.job($0, tick: 1))) })
        let worker = harness.worker(harness.configuration(delivery: .exactlyOnce))
        let run = Task { try await worker.run() }
        #expect(
            try await eventuallyHolds {
                Set(try await harness.activityIds()).isSuperset(of: harness.expectedIds(accounts: accounts, ticks: 1))
            })
        // Steady, nothing lost: the next Heartbeat (12) is answered FENCED_INSTANCE_ID (82), fatal for the consumer.
        try harness.cluster.pushRequestErrors(apiKey: 12, errors: [82])
        #expect(try await eventuallyHolds { harness.logs.contains("Static consumer fenced") })
        try await harness.publish(
            try accounts.map { ($0, try WireFormat.encode(try harness.job($0, tick: 2))) }, registeringAccounts: false)
        let done = try await eventuallyHolds {
            Set(try await harness.activityIds()).isSuperset(of: harness.expectedIds(accounts: accounts, ticks: 2))
        }
        #expect(done, "the worker went on after its consumer fenced itself")
        #expect(harness.logs.contains("replacing it under its id"))
        worker.beginShutdown()
        await #expect(throws: Never.self) { try await run.value }
    }

    @Test(.timeLimit(.minutes(2)))
    func tokensNeverAppearInAnyTopicOrLogLine() async throws {
        let harness = try WorkerHarness()
        let accounts = (1...4).map { "acct-\($0)" }
        // An account whose sealed config was tampered with: its job is dead-lettered, with no token in the letter.
        var tampered = try harness.account("acct-tampered")
        tampered.sealedConfig.ciphertext = "A" + tampered.sealedConfig.ciphertext.dropFirst()
        try await harness.register([tampered])
        _ = try await runWorker(
            harness, delivery: .atLeastOnce, accounts: accounts, ticks: 2,
            extra: [("acct-tampered", try WireFormat.encode(try harness.job("acct-tampered", tick: 9)))])
        for topic in harness.topics.all.map(\.name) {
            for message in try await harness.read(topic) {
                let raw =
                    (message.key ?? []) + (message.value ?? [])
                    + message.headers.flatMap { Array($0.key.utf8) + ($0.value ?? []) }
                #expect(!String(decoding: raw, as: UTF8.self).contains("tok-secret"), "token in \(topic)")
            }
        }
        let logs = harness.logs.all
        #expect(!logs.isEmpty)
        #expect(!logs.contains { $0.contains("tok-secret") })
    }
}

@Suite struct WorkerShutdownTests {
    /// The consumer waits for room in the job buffer parked in the worker's state machine; shutdown must let it go,
    /// and the drain's wait for a job that never ends must end at the shutdown deadline.
    @Test("a consumer held back by a full job buffer and a job that never ends still stop", .timeLimit(.minutes(2)))
    func aFullBufferAndAHangingJobStillStop() async throws {
        let harness = try WorkerHarness()
        let integration = HangingIntegration(account: "acct-slow")
        try await harness.publish(
            try (1...3).map { ("acct-slow", try WireFormat.encode(try harness.job("acct-slow", tick: $0))) })
        var configuration = harness.configuration(delivery: .exactlyOnce)
        configuration.maxBufferedJobs = 1
        configuration.shutdownDeadline = .seconds(2)
        let worker = WorkerService(
            configuration: configuration, integrations: IntegrationRegistry([integration]), sealer: harness.sealer,
            logger: harness.logs.logger)
        let run = Task { try await worker.run() }
        #expect(try await eventuallyHolds { integration.started })
        let started = ContinuousClock.now
        worker.beginShutdown()
        try await run.value
        #expect(integration.cancelled, "the hanging sync was cancelled once the drain's deadline passed")
        #expect(ContinuousClock.now - started < .seconds(30), "nothing waited past its deadline")
    }

    @Test(.timeLimit(.minutes(2)), arguments: [DeliveryMode.atLeastOnce, .exactlyOnce])
    func aWorkerWhoseClusterIsGoneStillStopsWithinItsDeadlines(delivery: DeliveryMode) async throws {
        let harness = try WorkerHarness()
        try await harness.publish([("acct-1", try WireFormat.encode(try harness.job("acct-1", tick: 1)))])
        var configuration = harness.configuration(delivery: delivery)
        configuration.shutdownDeadline = .seconds(5)
        configuration.transactionTimeout = .seconds(5)
        let worker = harness.worker(configuration)
        let run = Task { try? await worker.run() }
        #expect(try await eventuallyHolds { try await harness.activityIds().count == 1 })
        // More work arrives, then the cluster disappears under the worker.
        try await harness.publish([("acct-1", try WireFormat.encode(try harness.job("acct-1", tick: 2)))])
        await harness.cluster.close()
        let started = ContinuousClock.now
        worker.beginShutdown()
        _ = await run.value
        #expect(ContinuousClock.now - started < .seconds(75), "shutdown is bounded even without a cluster")
    }
}
