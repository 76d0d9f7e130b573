import ActivitySyncTesting
import ExternalIntegrations
import Foundation
import Kafka
import Logging
import SyncModel
import Testing
@testable import Worker

/// SDK CLIs (small shell programs) run by a real worker beside a GitHub-like integration: what a user sees on the
/// activities and state topics when one integration is slow or cannot finish its first sync in one run.
@Suite("External integrations in a worker", .serialized)
struct ExternalWorkerTests {
    /// A CLI written inline: `sh -c SCRIPT KEY sync --config … --integration-definition … --state …`.
    static func shell(key: String, _ script: String, timeoutSeconds: Int = 30, concurrency: Int = 1)
        -> IntegrationManifest
    {
        IntegrationManifest(
            key: key, command: ["/bin/sh", "-c", script, key],
            spec: ["name": .string(key), "key": .string(key), "schedule": ["frequency": "*/5 * * * *"]],
            timeoutSeconds: timeoutSeconds, concurrency: concurrency)
    }

    static func job(_ account: String, integration: String, tick: Int) -> SyncJob {
        SyncJob(
            accountId: account, integration: integration,
            scheduledAt: Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 3600
                + Double(tick) * 60))
    }

    static func publish(_ harness: WorkerHarness, _ jobs: [SyncJob]) async throws {
        try await harness.publish(
            try jobs.map { (key: $0.accountId, value: try WireFormat.encode($0)) }, registeringAccounts: false)
    }

    @Test(
        "a slow integration at concurrency 1 with 20 queued jobs delays GitHub jobs in the same worker by at most one of its jobs",
        .timeLimit(.minutes(2)))
    func aSlowIntegrationDoesNotStallTheWorker() async throws {
        let harness = try WorkerHarness()
        let slow = ExternalIntegration(
            manifest: Self.shell(
                key: "slow",
                #"sleep 2; echo '{"type":"activity","data":{"text":"slow sync","sourceURL":"https://example.com/s"}}'; echo '{"type":"state","data":{"done":true}}'"#
            ), logger: harness.logs.logger)
        // Jobs commit in offset order within a partition, so GitHub's jobs get partitions of their own here: what is
        // measured is the worker's slots, not a partition's head (see docs/integrations.md, "Fair slots").
        func partition(_ account: String) -> Int32 {
            KeyPartitioner.murmur2(Array(account.utf8), partitionCount: harness.partitions)
        }
        let slowAccounts = (1...200).map { "slow-\($0)" }.filter { partition($0) < 2 }.prefix(20).map { $0 }
        let githubAccounts = (1...200).map { "gh-\($0)" }.filter { partition($0) >= 2 }.prefix(8).map { $0 }
        #expect(slowAccounts.count == 20 && githubAccounts.count == 8)
        try await harness.register(try slowAccounts.map { try harness.account($0, integration: "slow") })
        try await harness.register(try githubAccounts.map { try harness.account($0) })
        // The slow integration's jobs first in every partition, then GitHub's.
        try await Self.publish(harness, slowAccounts.map { Self.job($0, integration: "slow", tick: 1) })
        try await Self.publish(harness, githubAccounts.map { Self.job($0, integration: "github", tick: 1) })
        var configuration = harness.configuration(delivery: .exactlyOnce)
        configuration.concurrency = 8
        configuration.shutdownDeadline = .seconds(5)
        let worker = WorkerService(
            configuration: configuration, integrations: IntegrationRegistry([CountingIntegration(), slow]),
            sealer: harness.sealer, logger: harness.logs.logger)
        let started = ContinuousClock.now
        let run = Task { try await worker.run() }
        let expected = harness.expectedIds(accounts: githubAccounts, ticks: 1)
        var slowDoneWhenGitHubWas = -1
        let done = try await eventuallyHolds(interval: .milliseconds(20)) {
            let ids = try await harness.activityIds()
            guard Set(ids).isSuperset(of: expected) else { return false }
            slowDoneWhenGitHubWas = ids.filter { $0.hasPrefix("slow:") }.count
            return true
        }
        let githubTook = ContinuousClock.now - started
        worker.beginShutdown()
        try await run.value
        #expect(done, "every GitHub job committed")
        // Before: 8 of the slow integration's jobs took all 8 worker slots, 7 of them only waiting for its one slot,
        // and GitHub's jobs ran after about 13 slow syncs (26 s).
        #expect(
            slowDoneWhenGitHubWas <= 1,
            "GitHub's jobs committed after \(slowDoneWhenGitHubWas) slow syncs (\(githubTook)); at most one may finish first")
    }
}
