import Accounts
import ActivitySyncTesting
import Foundation
import Kafka
import Logging
import Scheduler
import Sealing
import SyncModel
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Two `activity-sync scheduler` processes on one embedded cluster; one is killed with SIGKILL.
@Suite("Scheduler takeover (child processes)", .serialized)
struct SchedulerTakeoverTests {
    let token = "gho_takeover_TOKEN_never_on_kafka_987"

    private func get(_ url: String) async throws -> (status: Int, body: String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    private func owned(_ metricsURL: String) async throws -> Int? {
        guard let (_, body) = try? await get(metricsURL) else { return nil }
        for line in body.split(separator: "\n") where line.hasPrefix("activity_sync_scheduler_accounts_owned") {
            return Int(Double(line.split(separator: " ").last ?? "") ?? -1)
        }
        return nil
    }

    @Test(.timeLimit(.minutes(3)))
    func survivorTakesOverAfterSigkillWithoutMissingTicks() async throws {
        let kafka = try ActivitySyncProcess(
            "kafka", arguments: ["kafka", "embedded", "--brokers", "1", "--partitions", "4", "--topic-prefix", "tk"])
        defer { kafka.send(SIGKILL) }
        let bootstrap = String(
            try await kafka.waitForLine(timeout: .seconds(30)) { $0.hasPrefix("bootstrap.servers=") }.dropFirst(18))
        let topics = TopicNames(prefix: "tk")
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let sealer = Sealer(current: .random(id: "k1"))
        let client = AccountsTopicClient(
            kafka: KafkaConfiguration(bootstrapServers: bootstrap), topics: topics, logger: logger)
        let ids = (1...8).map { "acct-\($0)" }
        for id in ids { try await client.put(try account(id, sealer: sealer, token: token)) }

        func scheduler(_ name: String) throws -> ActivitySyncProcess {
            try ActivitySyncProcess(
                name,
                arguments: [
                    "scheduler", "--bootstrap", bootstrap, "--id", name, "--topic-prefix", "tk", "--metrics-port", "0",
                    "--session-timeout-ms", "6000",
                ])
        }
        let first = try scheduler("s1")
        let second = try scheduler("s2")
        defer {
            first.send(SIGKILL)
            second.send(SIGKILL)
        }
        let firstMetrics = String(try await first.waitForLine { $0.hasPrefix("metrics=") }.dropFirst(8))
        let secondMetrics = String(try await second.waitForLine { $0.hasPrefix("metrics=") }.dropFirst(8))
        #expect(try await get(firstMetrics.replacingOccurrences(of: "/metrics", with: "/healthz")).status == 200)

        // Both own a share of the accounts.
        try await eventually("both schedulers owning accounts", timeout: .seconds(60)) {
            let a = try await owned(firstMetrics) ?? 0
            let b = try await owned(secondMetrics) ?? 0
            return a > 0 && b > 0 && a + b == ids.count
        }
        // From here on the group is stable (the joins' eager rebalances, with their own catch-ups, are over).
        let stableAt = Date()
        #expect(try await get(secondMetrics.replacingOccurrences(of: "/metrics", with: "/readyz")).status == 200)
        try await Task.sleep(for: .seconds(5))

        let killedAt = Date()
        first.send(SIGKILL)
        _ = try await first.waitForExit(timeout: .seconds(10))
        try await eventually("the survivor owning every account", timeout: .seconds(60)) {
            try await owned(secondMetrics) == ids.count
        }
        let tookOverAt = Date()
        try await Task.sleep(for: .seconds(6))
        let stoppedAt = Date()
        #expect(await second.stop() == 0, "graceful shutdown exits 0")

        let reader = TopicReader(bootstrapServers: bootstrap, isolationLevel: .readUncommitted)
        func readAll(_ topic: String) async throws -> [ConsumerMessage] {
            try await reader.readAll(topic, partitions: 4)
        }
        let raw = try await readAll(topics.jobs)
        let jobs = try raw.map { try WireFormat.decode(SyncJob.self, from: $0.value ?? []) }
        // Every duplicate fire is the same job: same id, same bytes.
        var bytesById: [String: [UInt8]] = [:]
        for message in raw {
            let job = try WireFormat.decode(SyncJob.self, from: message.value ?? [])
            #expect(job.jobId == "\(job.accountId)@\(WireFormat.formatDate(job.scheduledAt))")
            if let earlier = bytesById[job.jobId] { #expect(earlier == message.value) }
            bytesById[job.jobId] = message.value
        }
        for id in ids {
            let ticks = Set(jobs.filter { $0.accountId == id && $0.scheduledAt >= stableAt }.map(\.scheduledAt))
                .sorted()
            let first = try #require(ticks.first, "\(id) never fired")
            // No tick is missed: consecutive fired ticks are 2 s apart, except for one gap across the takeover,
            // which the catch-up job (fired once the survivor loaded the account) closes: the worker reads
            // everything since its watermark, so that job covers the ticks nobody fired.
            var gaps: [(Date, Date)] = []
            for (earlier, later) in zip(ticks, ticks.dropFirst()) where later.timeIntervalSince(earlier) > 2 {
                gaps.append((earlier, later))
            }
            // (Normally one gap; a second one appears only if the survivor is starved of CPU for over a tick, when
            // it fires the latest due tick once rather than every tick it slept through.)
            for (earlier, later) in gaps {
                #expect(
                    earlier >= killedAt.addingTimeInterval(-4),
                    "\(id): gap \(earlier)–\(later) before the kill at \(killedAt)")
                #expect(
                    later <= tookOverAt.addingTimeInterval(4),
                    "\(id): gap \(earlier)–\(later) not closed soon after the takeover at \(tookOverAt)")
            }
            #expect(first < killedAt)
            #expect(ticks.last! >= stoppedAt.addingTimeInterval(-4), "\(id) stopped firing")
        }
        // The token never reached Kafka, nor any process output.
        let accountsRaw = try await readAll(topics.accounts)
        for message in raw + accountsRaw {
            #expect(!String(decoding: (message.key ?? []) + (message.value ?? []), as: UTF8.self).contains(token))
        }
        #expect(!first.allOutput.contains(token) && !second.allOutput.contains(token))
    }
}
