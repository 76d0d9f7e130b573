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
        func ownsPartitions(_ worker: ActivitySyncProcess) -> Bool {
            worker.stderrLines.contains { $0.contains("partitions assigned") && !$0.contains("partitions=[]") }
        }
        try await eventually("the first activities", timeout: .seconds(90), interval: .seconds(1)) {
            try await !pipeline.activities().isEmpty
        }
        for _ in 0..<4 {
            let current = second
            try await eventually("worker b owns partitions", timeout: .seconds(120), interval: .milliseconds(200)) {
                ownsPartitions(current)
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
                process.stderrLines.contains { $0.contains("partitions assigned") && !$0.contains("partitions=[]") }
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
            comeback.stderrLines.contains { $0.contains("partitions assigned") && !$0.contains("partitions=[]") }
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
    static var bootstrap: String? {
        ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"].flatMap { $0.isEmpty ? nil : $0 }
    }
    static var partitions: Int32 {
        ProcessInfo.processInfo.environment["KAFKA_TOPIC_PARTITIONS"].flatMap { Int32($0) } ?? 12
    }
}
