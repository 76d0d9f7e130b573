import ActivitySyncTesting
import ExternalIntegrations
import Foundation
import IntegrationCatalog
import Kafka
import Logging
import SyncModel
import Synchronization
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
            scheduledAt: Date(
                timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 3600
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
        let slowAccounts = (1...200).map { "slow-\($0)" }.filter { harness.partition(of: $0) < 2 }.prefix(20).map { $0 }
        let githubAccounts = (1...200).map { "gh-\($0)" }.filter { harness.partition(of: $0) >= 2 }.prefix(8).map { $0 }
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
            "GitHub's jobs committed after \(slowDoneWhenGitHubWas) slow syncs (\(githubTook)); at most one may finish first"
        )
    }

    /// The limit fair slots leave (docs/integrations.md, "Fair slots"): output commits in offset order per jobs
    /// partition, so a GitHub job queued behind a slow integration's jobs *in the same partition* runs at once but
    /// commits only after them. Measured here: 6 jobs of a 2 s CLI at concurrency 1, then one GitHub job, all in one
    /// partition.
    @Test(
        "a GitHub job behind a slow integration's jobs in its own partition runs at once but commits after them",
        .timeLimit(.minutes(2)))
    func aPartitionsHeadHoldsItsCommits() async throws {
        let harness = try WorkerHarness()
        let slow = ExternalIntegration(
            manifest: Self.shell(
                key: "slow",
                #"echo 'slow sync started' >&2; sleep 2; echo '{"type":"activity","data":{"text":"slow sync","sourceURL":"https://example.com/s"}}'"#
            ), logger: harness.logs.logger)
        let slowAccounts = (1...200).map { "slow-\($0)" }.filter { harness.partition(of: $0) == 0 }.prefix(6).map { $0 }
        let githubAccount = try #require((1...200).map { "gh-\($0)" }.first { harness.partition(of: $0) == 0 })
        try await harness.register(try slowAccounts.map { try harness.account($0, integration: "slow") })
        try await harness.register([try harness.account(githubAccount)])
        try await Self.publish(harness, slowAccounts.map { Self.job($0, integration: "slow", tick: 1) })
        try await Self.publish(harness, [Self.job(githubAccount, integration: "github", tick: 1)])
        let github = TimedIntegration()
        let worker = WorkerService(
            configuration: harness.configuration(delivery: .exactlyOnce),
            integrations: IntegrationRegistry([github, slow]),
            sealer: harness.sealer, logger: harness.logs.logger)
        let run = Task { try await worker.run() }
        var slowBefore = -1
        let committed = try await eventuallyHolds(interval: .milliseconds(20)) {
            let ids = try await harness.activityIds()
            guard ids.contains("fake:\(githubAccount):1") else { return false }
            slowBefore = ids.filter { $0.hasPrefix("slow:") }.count
            return true
        }
        let committedAt = ContinuousClock.now
        worker.beginShutdown()
        try await run.value
        // From the moment the first slow sync started (the worker's start-up, a few seconds, left out).
        let started = try #require(harness.logs.first(containing: "slow sync started"))
        let committedAfter = committedAt - started
        let ranAfter = try #require(github.firstSync.withLock { $0 }) - started
        print(
            "partition head: the GitHub job ran after \(ranAfter), committed after \(committedAfter), "
                + "behind \(slowBefore) slow syncs")
        #expect(committed)
        #expect(ranAfter < .seconds(2), "fair slots: the GitHub job did not wait for a slot (\(ranAfter))")
        #expect(slowBefore == 6, "it committed after the 6 slow jobs ahead of it in its partition, not before")
    }

    /// Three steps of 2.5 s, each printing two activities and then its state; the max runtime is 4 s, so one run
    /// finishes at most one step before it is killed. `$7` is `--state`'s JSON.
    static let longFirstSync = #"""
        case "$7" in *'"step":"2"'*) i=3;; *'"step":"1"'*) i=2;; *'"step":"3"'*) i=4;; *) i=1;; esac
        while [ $i -le 3 ]; do
          sleep 2.5
          echo "{\"type\":\"activity\",\"data\":{\"text\":\"item $i-a\",\"sourceURL\":\"https://example.com/$i\"}}"
          echo "{\"type\":\"activity\",\"data\":{\"text\":\"item $i-b\",\"sourceURL\":\"https://example.com/$i\"}}"
          echo "{\"type\":\"state\",\"data\":{\"step\":\"$i\"}}"
          i=$((i+1))
        done
        """#

    @Test(
        "a first sync longer than the max runtime completes over several jobs, every item exactly once",
        .timeLimit(.minutes(2)))
    func aLongFirstSyncFinishesThroughCheckpoints() async throws {
        let harness = try WorkerHarness()
        let integration = ExternalIntegration(
            manifest: Self.shell(key: "mailbox", Self.longFirstSync, timeoutSeconds: 4), logger: harness.logs.logger)
        try await harness.register([try harness.account("box-1", integration: "mailbox")])
        try await Self.publish(harness, (1...4).map { Self.job("box-1", integration: "mailbox", tick: $0) })
        let worker = WorkerService(
            configuration: harness.configuration(delivery: .exactlyOnce),
            integrations: IntegrationRegistry([integration]),
            sealer: harness.sealer, logger: harness.logs.logger)
        let run = Task { try await worker.run() }
        let expected = (1...3).flatMap { step in
            ["a", "b"].map {
                ExternalIntegration.activityId(
                    key: "mailbox", accountId: "box-1", sourceURL: "https://example.com/\(step)",
                    text: "item \(step)-\($0)")
            }
        }
        let done = try await eventuallyHolds(within: .seconds(60)) {
            Set(try await harness.activityIds()).isSuperset(of: expected)
        }
        worker.beginShutdown()
        try await run.value
        #expect(done, "every item of the first sync arrived")
        let ids = try await harness.activityIds()
        #expect(ids.sorted() == expected.sorted(), "every item exactly once, nothing else")
        let states = try await harness.read(harness.topics.state).compactMap {
            try? WireFormat.decode(StateRecord.self, from: $0.value ?? [])
        }
        #expect(states.last?.data == ["step": "3"])
        #expect(states.count >= 3, "the first sync took several jobs (\(states.count) states written)")
    }

    @Test(
        "a refreshed config printed before a failure is committed once, and the next job runs with it",
        .timeLimit(.minutes(2)))
    func aRefreshedConfigSurvivesAFailingRun() async throws {
        let harness = try WorkerHarness()
        // Refreshes tok-1 to tok-2 (the provider retires tok-1 at once), then fails. With tok-2 it syncs.
        let script = #"""
            case "$3" in
              *tok-1*) echo '{"type":"account","data":{"config":{"access_token":"tok-2"}}}'; echo "boom" >&2; exit 1;;
              *tok-2*) echo '{"type":"activity","data":{"text":"synced with the new token","sourceURL":"https://example.com/ok"}}';;
            esac
            """#
        let integration = ExternalIntegration(
            manifest: Self.shell(key: "rotating", script), logger: harness.logs.logger)
        try await harness.register([
            try harness.account("rot-1", config: ["access_token": "tok-1"], integration: "rotating")
        ])
        try await Self.publish(harness, [Self.job("rot-1", integration: "rotating", tick: 1)])
        let worker = WorkerService(
            configuration: harness.configuration(delivery: .exactlyOnce),
            integrations: IntegrationRegistry([integration]),
            sealer: harness.sealer, logger: harness.logs.logger)
        let run = Task { try await worker.run() }
        // Two state records: the refreshed config stored the moment it was printed, then the failing job's own.
        let failedOnce = try await eventuallyHolds { try await harness.read(harness.topics.state).count == 2 }
        try await Self.publish(harness, [Self.job("rot-1", integration: "rotating", tick: 2)])
        let expected = ExternalIntegration.activityId(
            key: "rotating", accountId: "rot-1", sourceURL: "https://example.com/ok", text: "synced with the new token")
        let synced = try await eventuallyHolds { try await harness.activityIds().contains(expected) }
        worker.beginShutdown()
        try await run.value
        #expect(failedOnce, "the failing run wrote the account's state with the refreshed config")
        #expect(synced, "the next job ran with tok-2")
        let states = try await harness.read(harness.topics.state).compactMap {
            try? WireFormat.decode(StateRecord.self, from: $0.value ?? [])
        }
        #expect(states.count == 3)
        #expect(
            states.prefix(2).allSatisfy { $0.credentials?.refreshed != nil },
            "sealed when printed, and in the failing job's state record")
        #expect(
            states.first?.lastJob == nil && states.dropFirst().first?.lastJob != nil, "the job's own record came second"
        )
        let statuses = try await harness.read(harness.topics.status).map {
            String(decoding: $0.value ?? [], as: UTF8.self)
        }
        #expect(statuses.first?.contains("failing") == true, "the failing run still shows as failing: \(statuses)")
    }

    /// The worker stops while the CLI, having refreshed tok-1 to tok-2 (the provider retires tok-1 at once), still
    /// runs: the job is cancelled and commits nothing. The refreshed config was stored the moment it was printed, so
    /// the job's re-run — by the next worker — runs with tok-2, and the token never reached the log.
    @Test(
        "a worker stopped while a CLI that refreshed its token still runs: the re-run has the new token",
        .timeLimit(.minutes(2)))
    func aRefreshedConfigIsStoredWhenPrinted() async throws {
        let harness = try WorkerHarness()
        let script = #"""
            case "$3" in
              *tok-1*) echo '{"type":"account","data":{"config":{"access_token":"tok-2-fresh"}}}'
                       echo "refreshed to tok-2-fresh, now sleeping" >&2; sleep 60;;
              *tok-2-fresh*) echo '{"type":"activity","data":{"text":"synced with the new token","sourceURL":"https://example.com/ok"}}';;
            esac
            """#
        let integration = ExternalIntegration(
            manifest: Self.shell(key: "rotating", script), logger: harness.logs.logger)
        try await harness.register([
            try harness.account("rot-1", config: ["access_token": "tok-1"], integration: "rotating")
        ])
        try await Self.publish(harness, [Self.job("rot-1", integration: "rotating", tick: 1)])
        var configuration = harness.configuration(delivery: .exactlyOnce)
        configuration.shutdownDeadline = .seconds(1)
        let first = WorkerService(
            configuration: configuration, integrations: IntegrationRegistry([integration]), sealer: harness.sealer,
            logger: harness.logs.logger)
        let firstRun = Task { try await first.run() }
        let sleeping = try await eventuallyHolds { harness.logs.contains("now sleeping") }
        first.beginShutdown()
        try await firstRun.value
        #expect(sleeping, "the CLI refreshed and went to sleep")
        #expect(try await harness.activityIds().isEmpty, "the stopped job committed nothing")
        let second = WorkerService(
            configuration: configuration, integrations: IntegrationRegistry([integration]), sealer: harness.sealer,
            logger: harness.logs.logger)
        let secondRun = Task { try await second.run() }
        let expected = ExternalIntegration.activityId(
            key: "rotating", accountId: "rot-1", sourceURL: "https://example.com/ok", text: "synced with the new token")
        let synced = try await eventuallyHolds(within: .seconds(30)) { try await harness.activityIds() == [expected] }
        second.beginShutdown()
        try await secondRun.value
        #expect(synced, "the re-run ran with tok-2-fresh")
        #expect(harness.logs.contains("refreshed to [redacted], now sleeping"))
        #expect(!harness.logs.all.contains { $0.contains("tok-2-fresh") }, "the new token is in the log")
        let raw = try await harness.read(harness.topics.state).map { String(decoding: $0.value ?? [], as: UTF8.self) }
        #expect(!raw.contains { $0.contains("tok-2-fresh") }, "the state topic holds the config sealed only")
    }
}

/// ``CountingIntegration`` that notes when its first sync started.
final class TimedIntegration: Integration {
    let key = "github"
    let firstSync = Mutex<ContinuousClock.Instant?>(nil)
    func spec() -> JSONValue { [:] }
    func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        AccountSetup(accountId: "", config: [:], settings: [:])
    }
    func sync(_ request: SyncRequest) async throws -> SyncOutcome {
        firstSync.withLock { $0 = $0 ?? .now }
        return try await CountingIntegration().sync(request)
    }
}
