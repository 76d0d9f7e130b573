import ActivitySyncTesting
import Foundation
import Kafka
import Logging
import Metrics
import MetricsTestKit
import Scheduler
import Sealing
import ServiceLifecycle
import SyncModel
import Testing

/// Runs a scheduler service for the duration of `body`, then shuts it down gracefully.
func withScheduler<T: Sendable>(
    _ cluster: TestCluster, logs: CapturedLogs, name: String = "s1", metrics: (any MetricsFactory)? = nil,
    _ body: @Sendable (SchedulerService) async throws -> T
) async throws -> T {
    var configuration = SchedulerConfiguration(
        kafka: cluster.kafka, validator: AccountValidator(knownIntegrations: ["github"]))
    configuration.metricsFactory = metrics
    configuration.topics = cluster.topics
    configuration.groupId = "scheduler-test"
    configuration.sessionTimeout = .seconds(6)
    let service = SchedulerService(configuration: configuration, logger: logs.logger("scheduler.\(name)"))
    let group = ServiceGroup(
        configuration: .init(services: [service], logger: logs.logger("group")))
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask {
            try await group.run()
            return nil
        }
        let result: T
        do {
            result = try await body(service)
        } catch {
            print("scheduler logs:\n" + logs.all.suffix(80).joined(separator: "\n"))
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        return result
    }
}

@Suite("Scheduler service on the embedded cluster", .serialized)
struct SchedulerServiceTests {
    let token = "gho_TOKEN_that_must_never_reach_kafka_0123"

    @Test(.timeLimit(.minutes(2)))
    func firesSixFieldCronJobsWithoutSecrets() async throws {
        let cluster = try TestCluster()
        let sealer = Sealer(current: .random(id: "k1"))
        for id in ["alice", "bob", "carol"] {
            try await cluster.putAccount(try account(id, sealer: sealer, token: token))
        }
        let logs = CapturedLogs()
        try await withScheduler(cluster, logs: logs) { service in
            try await eventually("three ticks per account", timeout: .seconds(60)) {
                let jobs = try await cluster.jobs().filter { !$0.jobId.isEmpty }
                return ["alice", "bob", "carol"].allSatisfy { id in jobs.filter { $0.accountId == id }.count >= 3 }
            }
            #expect(service.accountsOwned == 3)
        }
        let jobs = try await cluster.jobs()
        for job in jobs {
            #expect(job.type == "sync")
            #expect(job.jobId == "\(job.accountId)@\(WireFormat.formatDate(job.scheduledAt))")
            #expect(Int(job.scheduledAt.timeIntervalSince1970) % 2 == 0)
            #expect(job.scheduledAt.timeIntervalSince1970.rounded() == job.scheduledAt.timeIntervalSince1970)
            #expect(job.integration == "github")
        }
        // Regular ticks of one account are two seconds apart (the first may be the catch-up).
        let alice = jobs.filter { $0.accountId == "alice" }.map(\.scheduledAt).sorted()
        for (earlier, later) in zip(alice.dropFirst(), alice.dropFirst(2)) {
            #expect(later.timeIntervalSince(earlier) == 2)
        }
        // Keyed by account id, so one account's jobs stay in order on one partition.
        let raw = try await cluster.rawRecords(cluster.topics.jobs)
        #expect(raw.allSatisfy { $0.key.map { String(decoding: $0, as: UTF8.self) } != nil })
        #expect(Set(raw.filter { $0.key == Array("alice".utf8) }.map(\.partition)).count == 1)
        // A job is only what scheduling knows: the worker reads the account's sealed config from its record.
        let ciphertexts = try await cluster.rawRecords(cluster.topics.accounts).compactMap {
            try $0.value.map { try AccountRecord.decodeMessage($0).sealedConfig.ciphertext }
        }
        #expect(ciphertexts.count == 3)
        for message in raw {
            let text = String(decoding: message.value ?? [], as: UTF8.self)
            #expect(!text.contains("sealedConfig"), "\(text)")
            #expect(!ciphertexts.contains { text.contains($0) }, "\(text)")
        }

        // Nothing on either topic carries the token, in any record part.
        for topic in [cluster.topics.accounts, cluster.topics.jobs] {
            for message in try await cluster.rawRecords(topic) {
                let bytes =
                    (message.key ?? []) + (message.value ?? [])
                    + message.headers.flatMap { Array($0.key.utf8) + ($0.value ?? []) }
                #expect(!String(decoding: bytes, as: UTF8.self).contains(token))
                #expect(!String(decoding: bytes, as: UTF8.self).contains("gho_"))
            }
        }
        #expect(!logs.all.contains { $0.contains(token) })
        await cluster.close()
    }

    /// Records the scheduler cannot schedule are logged and skipped; a record whose sealed config is missing,
    /// empty or sealed under an unknown key is scheduled all the same: the scheduler never reads the config, the
    /// worker does, and dead-letters the job with its reason.
    @Test(.timeLimit(.minutes(2)))
    func unschedulableRecordsAreSkippedAndConfigsAreLeftToTheWorker() async throws {
        let cluster = try TestCluster()
        let sealer = Sealer(current: .random(id: "k1"))
        let stranger = Sealer(current: .random(id: "other"))
        var missingConfig = try account("no-token", sealer: sealer, token: token)
        missingConfig.sealedConfig.ciphertext = ""
        let noConfigJSON =
            #"{"type":"account","data":{"accountId":"no-config","integration":"github","#
            + #""settings":{"enabled":true,"schedule":{"frequency":"*/2 * * * * *"}},"#
            + #""updatedAt":"2026-12-01T00:00:00Z"}}"#
        let noScheduleJSON =
            #"{"type":"account","data":{"accountId":"no-schedule","integration":"github","#
            + #""settings":{"enabled":true},"updatedAt":"2026-12-01T00:00:00Z"}}"#
        func raw(_ key: String, _ value: String) -> ProducerRecord {
            ProducerRecord(topic: cluster.topics.accounts, key: Array(key.utf8), value: Array(value.utf8))
        }
        func text(_ record: AccountRecord) throws -> String {
            String(decoding: try record.messageBytes(), as: UTF8.self)
        }
        try await cluster.putAccount(try account("good-before", sealer: sealer, token: token))
        try await cluster.produce([
            raw("garbage", "this is not json"),
            raw("bad-cron", try text(try account("bad-cron", schedule: "0 0 32 * *", sealer: sealer, token: token))),
            raw("unknown", try text(try account("unknown", integration: "gitlab", sealer: sealer, token: token))),
            raw("no-schedule", noScheduleJSON),
            raw("other-key", try text(try account("mismatch", sealer: sealer, token: token))),
            raw("no-token", try text(missingConfig)),
            raw("no-config", noConfigJSON),
            raw("wrong-key", try text(try account("wrong-key", sealer: stranger, token: token))),
        ])
        let logs = CapturedLogs()
        let leftToTheWorker: Set = ["no-token", "no-config", "wrong-key"]
        try await withScheduler(cluster, logs: logs) { service in
            try await eventually("the good account and the ones with unusable configs firing", timeout: .seconds(60)) {
                Set(try await cluster.jobs().map(\.accountId)).isSuperset(of: leftToTheWorker.union(["good-before"]))
            }
            // An account added after the bad records still gets scheduled: the scheduler kept running.
            try await cluster.putAccount(try account("good-after", sealer: sealer, token: token))
            try await eventually("the account added later firing twice", timeout: .seconds(30)) {
                try await cluster.jobs().filter { $0.accountId == "good-after" }.count >= 2
            }
            #expect(service.accountsOwned == 5)
        }
        let fired = Set(try await cluster.jobs().map(\.accountId))
        #expect(fired == leftToTheWorker.union(["good-before", "good-after"]))
        let warnings = logs.all.filter { $0.contains("skipping account record") }
        let expectations: [(String, String)] = [
            ("account=garbage", "not an account record: invalid JSON"),
            ("account=bad-cron", "bad schedule: day-of-month field '32': value 32 out of range 1-31"),
            ("account=unknown", "unknown integration 'gitlab'"),
            ("account=no-schedule", "not an account record: missing field 'data.settings.schedule'"),
            ("account=other-key", "record key 'other-key' differs from accountId 'mismatch'"),
        ]
        for (account, reason) in expectations {
            #expect(
                warnings.contains { $0.contains(account) && $0.contains(reason) }, "no warning \(reason) in \(warnings)"
            )
        }
        for id in leftToTheWorker { #expect(!warnings.contains { $0.contains("account=\(id) ") }, "\(warnings)") }
        await cluster.close()
    }

    @Test(.timeLimit(.minutes(2)))
    func removedAndChangedAccountsTakeEffectByTheNextTick() async throws {
        let cluster = try TestCluster()
        let sealer = Sealer(current: .random(id: "k1"))
        try await cluster.putAccount(try account("stays", sealer: sealer, token: token))
        try await cluster.putAccount(try account("leaves", sealer: sealer, token: token))
        try await cluster.putAccount(try account("slows", sealer: sealer, token: token))
        let logs = CapturedLogs()
        try await withScheduler(cluster, logs: logs) { service in
            try await eventually("all three firing", timeout: .seconds(60)) {
                Set(try await cluster.jobs().map(\.accountId)) == ["stays", "leaves", "slows"]
            }
            try await cluster.produce([
                ProducerRecord(topic: cluster.topics.accounts, key: Array("leaves".utf8), value: nil)
            ])
            try await cluster.putAccount(try account("slows", schedule: "*/10 * * * * *", sealer: sealer, token: token))
            try await eventually("the removal applied", timeout: .seconds(10)) { service.accountsOwned == 2 }
            let changedAt = Date()
            // The new */10 schedule fires within one period plus the account's spread offset (below 10 s).
            try await eventually("the changed schedule firing", timeout: .seconds(30)) {
                try await cluster.jobs().contains {
                    $0.accountId == "slows" && $0.scheduledAt > changedAt.addingTimeInterval(2)
                }
            }
            // The unchanged account keeps its */2 schedule (three ticks need up to 6 s more; the first */10 tick
            // of "slows" can come sooner than that).
            try await eventually("the unchanged account still firing", timeout: .seconds(15)) {
                try await cluster.jobs().filter {
                    $0.accountId == "stays" && $0.scheduledAt > changedAt.addingTimeInterval(2)
                }.count >= 3
            }
            let after = try await cluster.jobs().filter { $0.scheduledAt > changedAt.addingTimeInterval(2) }
            #expect(!after.contains { $0.accountId == "leaves" })
            let slow = after.filter { $0.accountId == "slows" }
            #expect(slow.allSatisfy { Int($0.scheduledAt.timeIntervalSince1970) % 10 == 0 })
        }
        await cluster.close()
    }

    /// "Why are 50,000 dead accounts still costing a job every tick?": an account whose status is needs_reauth for
    /// its current record gets no job — not even the catch-up when the scheduler loads it — until its record
    /// changes; a status written before statuses named a record holds nothing; paused and held accounts are counted.
    @Test(.timeLimit(.minutes(2)))
    func needsReauthAccountsGetNoJobsUntilTheirRecordChanges() async throws {
        let cluster = try TestCluster(status: true)
        let sealer = Sealer(current: .random(id: "k1"))
        /// Writes the record and returns its version.
        @discardableResult
        @Sendable func put(_ record: AccountRecord) async throws -> AccountVersion {
            let bytes = try record.messageBytes()
            try await cluster.produce([
                ProducerRecord(topic: cluster.topics.accounts, key: Array(record.accountId.utf8), value: bytes)
            ])
            return AccountVersion(recordBytes: bytes)
        }
        @Sendable func status(_ id: String, _ status: AccountStatus.Status, version: AccountVersion?) async throws {
            let record = AccountStatus(
                accountId: id, integration: "github", status: status, reason: "the token was rejected", at: Date(),
                accountVersion: version?.description)
            try await cluster.produce([
                ProducerRecord(topic: cluster.topics.status, key: Array(id.utf8), value: try record.messageBytes())
            ])
        }
        let held = try await put(try account("held", sealer: sealer, token: token))
        try await put(try account("old", sealer: sealer, token: token))
        let later = try await put(try account("later", sealer: sealer, token: token))
        var paused = try account("paused", sealer: sealer, token: token)
        paused.settings.paused = AccountSettings.Pause(reason: .manual, at: Date())
        try await put(paused)
        try await status("held", .needsReauth, version: held)
        try await status("old", .needsReauth, version: nil)  // as written before statuses named a record
        @Sendable func jobs(_ id: String) async throws -> Int {
            try await cluster.jobs().filter { $0.accountId == id }.count
        }
        let metrics = TestMetrics()
        @Sendable func gauge(_ name: String) throws -> Double? {
            try metrics.expectGauge("activity_sync_scheduler_accounts_\(name)", [("integration", "github")]).lastValue
        }
        let logs = CapturedLogs()
        try await withScheduler(cluster, logs: logs, metrics: metrics) { service in
            try await eventually("three ticks of the account with an old status", timeout: .seconds(60)) {
                let (old, notYetHeld) = (try await jobs("old"), try await jobs("later"))
                return old >= 3 && notYetHeld >= 3
            }
            #expect(try await jobs("held") == 0, "a held account got a job")
            #expect(try await jobs("paused") == 0)
            #expect(try gauge("paused") == 1)
            #expect(try gauge("needs_reauth") == 1)
            // A status arriving while the scheduler runs holds too.
            try await status("later", .needsReauth, version: later)
            try await eventually("the gauge counts the second held account") { try gauge("needs_reauth") == 2 }
            let before = try await jobs("later")
            try await Task.sleep(for: .seconds(5))  // two ticks of */2 at least
            #expect(try await jobs("later") <= before + 1, "jobs kept coming after the status")
            // Reconnected: a new record (new sealed config, new updatedAt) fires again at once and on its ticks.
            try await put(try account("held", sealer: sealer, token: token + "-new"))
            try await eventually("the reconnected account's jobs", timeout: .seconds(30)) {
                try await jobs("held") >= 2
            }
            try await eventually("the gauge drops") { try gauge("needs_reauth") == 1 }
        }
        await cluster.close()
    }
}
