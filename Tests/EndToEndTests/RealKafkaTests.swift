import ActivitySyncTesting
import Foundation
import Kafka
import Logging
import SyncModel
import Testing
import GitHubSimulator

/// What only a real Kafka can show: `read_committed` readers never see aborted or open transactional records.
///
/// Runs when `KAFKA_BOOTSTRAP_SERVERS` names a real cluster whose topics were made by `activity-sync topics
/// create --partitions 12` (docker-compose does both); skipped otherwise, because the embedded mock cluster has
/// no transaction isolation.
@Suite(
    "Exactly-once on a real Kafka", .serialized, .timeLimit(.minutes(5)),
    .enabled(if: RealKafka.bootstrap != nil, "set KAFKA_BOOTSTRAP_SERVERS to a real Kafka to run these"))
struct RealKafkaTests {
    @Test("a worker killed mid-batch and restarted: read_committed sees every activity exactly once")
    func workerCrashIsExactlyOnce() async throws {
        let bootstrap = try #require(RealKafka.bootstrap)
        let pipeline = try await Pipeline(accounts: 4, partitions: RealKafka.partitions, realKafka: bootstrap)
        try await pipeline.registerAccounts()
        let scheduler = try pipeline.startScheduler("real-scheduler-\(UUID().uuidString.prefix(6))")
        let workerId = "real-worker-\(UUID().uuidString.prefix(6))"
        var worker = try pipeline.startWorker(workerId)
        try await eventually("the first activities", timeout: .seconds(90), interval: .seconds(1)) {
            try await !pipeline.activities().isEmpty
        }
        worker.send(SIGKILL)
        _ = try await worker.waitForExit()
        worker = try pipeline.startWorker(workerId)
        try await pipeline.waitForCompleteness(until: Date().addingTimeInterval(4))
        let emitted = try await pipeline.activities()
        #expect(emitted.count == Set(emitted.map(\.id)).count, "a read_committed reader saw repeats")
        #expect(Set(emitted.map(\.id)).subtracting(try pipeline.truth(until: Date())).isEmpty)
        await pipeline.shutdown([scheduler, worker])
    }

    /// The reproduction from the exactly-once issue, compressed: many accounts on a 2 s schedule, two workers, one
    /// of them SIGKILLed several times right after it took partitions (transactions in flight) and restarted under
    /// the same id, then a third worker joining.
    @Test("rebalances and restarts: two workers, one SIGKILLed and restarted while it owns partitions, a third joining")
    func rebalanceAndRestartIsExactlyOnce() async throws {
        let bootstrap = try #require(RealKafka.bootstrap)
        let pipeline = try await Pipeline(accounts: 30, partitions: RealKafka.partitions, realKafka: bootstrap)
        try await pipeline.registerAccounts()
        let run = UUID().uuidString.prefix(6)
        let scheduler = try pipeline.startScheduler("real-scheduler-\(run)")
        let first = try pipeline.startWorker("real-a-\(run)")
        var second = try pipeline.startWorker("real-b-\(run)")
        try await eventually("the first activities", timeout: .seconds(90), interval: .seconds(1)) {
            try await !pipeline.activities().isEmpty
        }
        for _ in 0..<4 {
            let current = second
            try await eventually("worker b owns partitions", timeout: .seconds(120), interval: .milliseconds(200)) {
                RealKafka.ownsPartitions(current)
            }
            try await Task.sleep(for: .seconds(2))  // the scenario: killed with transactions in flight
            // Killed with transactions in flight, restarted under the same id (as a StatefulSet pod is).
            second.send(SIGKILL)
            _ = try await second.waitForExit()
            second = try pipeline.startWorker("real-b-\(run)")
        }
        let third = try pipeline.startWorker("real-c-\(run)")
        let checkpoint = Date().addingTimeInterval(10)
        let processes = [scheduler, first, second, third]
        do {
            try await pipeline.waitForCompleteness(until: checkpoint, timeout: .seconds(240))
            let emitted = try await pipeline.activities()
            var seen = Set<String>()
            let repeats = emitted.filter { !seen.insert($0.id).inserted }.map(\.id)
            #expect(repeats.isEmpty, "a read_committed reader saw \(repeats.count) repeats: \(repeats.prefix(5))")
            #expect(seen.subtracting(try pipeline.truth(until: Date())).isEmpty, "invented ids")
            for process in processes { _ = await process.stop(grace: .seconds(30)) }
            let invariant = try await pipeline.stateInvariant()
            #expect(invariant.checked == pipeline.simulator.users.count, "every account had committed jobs")
            #expect(
                invariant.violations.isEmpty,
                "state not that of the last committed job: \(invariant.violations.prefix(5))")
            // One run record per committed job, none for the killed workers' aborted batches.
            let runs = try await pipeline.runRecordInvariant()
            #expect(runs.checked > 0)
            #expect(runs.missing.isEmpty, "committed jobs without a run record: \(runs.missing.prefix(5))")
            #expect(runs.repeated.isEmpty, "jobs with more than one run record: \(runs.repeated.prefix(5))")
        } catch {
            for process in processes { Issue.record("\(process.name): \(process.allOutput.suffix(2000))") }
            await pipeline.shutdown(processes)
            throw error
        }
        await pipeline.shutdown(processes)
    }

    @Test("a worker restarted under the same id gets its partitions back without waiting for its session timeout")
    func restartUnderTheSameIdNeedsNoRebalanceWait() async throws {
        let bootstrap = try #require(RealKafka.bootstrap)
        let pipeline = try await Pipeline(accounts: 4, partitions: RealKafka.partitions, realKafka: bootstrap)
        try await pipeline.registerAccounts()
        let run = UUID().uuidString.prefix(6)
        let scheduler = try pipeline.startScheduler("real-scheduler-\(run)")
        // A long session: with dynamic membership the group would wait for the dead member this long.
        let session = 45_000
        let other = try pipeline.startWorker("real-x-\(run)", sessionTimeoutMs: session)
        var worker = try pipeline.startWorker("real-y-\(run)", sessionTimeoutMs: session)
        try await eventually("both workers own partitions", timeout: .seconds(120), interval: .seconds(1)) {
            [other, worker].allSatisfy { process in
                RealKafka.ownsPartitions(process)
            }
        }
        worker.send(SIGKILL)
        _ = try await worker.waitForExit()
        let restarted = ContinuousClock.now
        worker = try pipeline.startWorker("real-y-\(run)", sessionTimeoutMs: session)
        let comeback = worker
        try await eventually(
            "the restarted worker owns partitions again", timeout: .seconds(90), interval: .milliseconds(200)
        ) {
            RealKafka.ownsPartitions(comeback)
        }
        let waited = ContinuousClock.now - restarted
        #expect(waited < .seconds(20), "took \(waited) to get partitions back (session timeout 45 s)")
        await pipeline.shutdown([scheduler, other, worker])
    }
}

extension RealKafkaTests {
    /// The co-partitioned join on a real broker: jobs carry no config, so jobs scheduled while the worker was down —
    /// before the account was reconnected — run with the reconnected account's token. Run on the old one (retired by
    /// the reconnection, its refresh token too) they would leave the account in needs_reauth.
    @Test("jobs scheduled before an account was reconnected run with its new token; still exactly once")
    func jobsRunWithTheAccountsCurrentRecord() async throws {
        let bootstrap = try #require(RealKafka.bootstrap)
        let pipeline = try await Pipeline(accounts: 3, partitions: RealKafka.partitions, realKafka: bootstrap)
        try await pipeline.registerAccounts()
        let run = UUID().uuidString.prefix(6)
        let scheduler = try pipeline.startScheduler("join-scheduler-\(run)")
        let workerId = "join-worker-\(run)"
        var worker = try pipeline.startWorker(workerId)
        try await eventually("the first activities", timeout: .seconds(90), interval: .seconds(1)) {
            try await !pipeline.activities().isEmpty
        }
        worker.send(SIGTERM)
        _ = try await worker.waitForExit()
        // Jobs pile up for a few ticks (2 s each), then the account is reconnected, then the worker comes back.
        try await Task.sleep(for: .seconds(5))
        let login = try #require(pipeline.simulator.users.first).login
        let reconnected = try pipeline.simulator.reconnect(login: login)
        try await pipeline.register([reconnected])
        worker = try pipeline.startWorker(workerId)
        try await eventually("the new token is used", timeout: .seconds(90), interval: .seconds(1)) {
            pipeline.simulator.quotaUsed(token: reconnected.token) > 0
        }
        try await pipeline.waitForCompleteness(until: Date().addingTimeInterval(4))
        let statuses = try await pipeline.statuses()
        #expect(
            statuses[String(reconnected.id)]?.status != .needsReauth,
            "\(String(describing: statuses[String(reconnected.id)]))")
        let emitted = try await pipeline.activities()
        #expect(emitted.count == Set(emitted.map(\.id)).count, "a read_committed reader saw repeats")
        #expect(Set(emitted.map(\.id)).subtracting(try pipeline.truth(until: Date())).isEmpty)
        let accounts = Set(pipeline.simulator.users.map { String($0.id) })
        let letters = try await pipeline.reader.readAll(pipeline.topics.deadLetters, partitions: pipeline.partitions)
            .filter { $0.key.map { accounts.contains(String(decoding: $0, as: UTF8.self)) } ?? false }
        #expect(letters.isEmpty, "no job of this run was dead-lettered")
        await pipeline.shutdown([scheduler, worker])
    }
}

enum RealKafka {
    /// Whether a worker process has said it owns partitions (an assignment that is not empty).
    static func ownsPartitions(_ worker: ActivitySyncProcess) -> Bool {
        worker.stderrLines.contains { $0.contains("partitions assigned") && !$0.contains("partitions=[]") }
    }

    static var bootstrap: String? {
        ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"].flatMap { $0.isEmpty ? nil : $0 }
    }
    static var partitions: Int32 {
        ProcessInfo.processInfo.environment["KAFKA_TOPIC_PARTITIONS"].flatMap { Int32($0) } ?? 12
    }
}

extension RealKafkaTests {
    /// A previous owner's last transaction can still be open when the group hands its partition to a worker (the
    /// coordinator finished the rebalance without it: its session ran out in a broker outage, say) and commit while
    /// the worker restores. The worker's consumer, reading `read_committed`, waits for that transaction's offsets
    /// (KIP-447) and starts after them; the state it restored must then include that transaction's state record, or
    /// the next job runs on the state from before it and emits its output again (seen once in six broker-restart
    /// runs: three repeats). Here the previous owner is this test: it sends the first job's offset in a transaction,
    /// a worker is started, and the account's state record goes out in that transaction, which then commits, only
    /// once the worker had time to restore. The second job must then list notifications from that state's
    /// watermark, not as a first sync.
    @Test(
        "a previous owner's transaction that commits while a worker restores is in the state the worker's next job runs on"
    )
    func restoreIncludesThePreviousOwnersLastTransaction() async throws {
        let bootstrap = try #require(RealKafka.bootstrap)
        let pipeline = try await Pipeline(accounts: 1, partitions: RealKafka.partitions, realKafka: bootstrap)
        try await pipeline.registerAccounts()
        let user = try #require(pipeline.simulator.users.first)
        let account = String(user.id)
        let partition = KeyPartitioner.murmur2(Array(account.utf8), partitionCount: RealKafka.partitions)
        let kafka = KafkaConfiguration(bootstrapServers: bootstrap)
        let logger = Logger(label: "activity-sync.test.previous-owner")
        func job(_ scheduledAt: Date) throws -> ProducerRecord {
            ProducerRecord(
                topic: pipeline.topics.jobs, partition: partition, key: Array(account.utf8),
                value: try WireFormat.encode(
                    SyncJob(accountId: account, integration: "github", scheduledAt: scheduledAt)))
        }
        // The first job, done by the previous owner.
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let jobs = try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka), logger: logger)
        let done = try await jobs.send(try job(now.addingTimeInterval(-10)))
        // Its state: notifications synced up to an hour ago, a watermark no first sync would start from.
        let watermark = now.addingTimeInterval(-3600)
        let state = StateRecord(
            accountId: account, integration: "github", lastJob: nil, updatedAt: now,
            data: [
                "lastSyncTime": .string(ISO8601DateFormatter().string(from: watermark)),
                "username": .string(user.login),
            ])
        let previousOwner = try KafkaTransactionalProducer(
            configuration: TransactionalProducerConfiguration(
                kafka: kafka, transactionalId: "previous-owner-\(UUID().uuidString.prefix(6))"),
            logger: logger)
        try await previousOwner.initTransactions(timeout: .seconds(30))
        try previousOwner.beginTransaction()
        try await previousOwner.sendOffsetsToTransaction(
            [TopicPartitionOffset(topic: pipeline.topics.jobs, partition: partition, offset: done.offset + 1)],
            groupMetadata: ConsumerGroupMetadata(groupId: "activity-sync-workers"), timeout: .seconds(30))
        // The worker is assigned the partition while the transaction is open.
        let worker = try pipeline.startWorker("real-restore-\(UUID().uuidString.prefix(6))")
        // Up to 20 s for the assignment and its restore: a worker that waits for the transaction before it says
        // "partitions assigned" is what this test wants, so timing out here is no failure.
        do {
            try await eventually("the worker owns partitions", timeout: .seconds(20)) {
                RealKafka.ownsPartitions(worker)
            }
        } catch {}
        // Its state record goes out only now, after a restore that did not wait would have read the partition.
        _ = try await previousOwner.send([
            ProducerRecord(
                topic: pipeline.topics.state, partition: partition, key: Array(account.utf8),
                value: try WireFormat.encode(state))
        ])
        try await previousOwner.commitTransaction(timeout: .seconds(30))
        // The next job runs on the state the worker restored.
        _ = try await jobs.send(try job(now))
        var listing: RecordedRequest?
        try await eventually("the second job's notifications listing", timeout: .seconds(60)) {
            listing = pipeline.simulator.requests().first { $0.path.hasSuffix("/notifications") }
            return listing != nil
        }
        let since = try #require(
            listing?.query.flatMap { URLComponents(string: "?\($0)")?.queryItems?.first { $0.name == "since" }?.value }
                .flatMap(WireFormat.parseDate), "since in \(String(describing: listing?.query))")
        // The listing starts at the watermark minus the overlap; a first sync would start days back.
        #expect(
            abs(since.timeIntervalSince(watermark.addingTimeInterval(-120))) < 2,
            "listed since \(since), not from the previous owner's watermark \(watermark): the restored state missed its transaction"
        )
        await jobs.close(timeout: .seconds(5))
        await previousOwner.close(timeout: .seconds(5))
        await pipeline.shutdown([worker])
    }
}
