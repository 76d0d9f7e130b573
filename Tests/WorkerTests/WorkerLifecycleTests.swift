import ActivitySyncTesting
import Foundation
import IntegrationCatalog
import Kafka
import ServiceLifecycle
import ServiceLifecycleTestKit
import SyncModel
import Testing
@testable import Worker

/// The worker as a `Service` under swift-service-lifecycle: what SIGTERM in a deployment does to it, driven by the
/// test kit's graceful-shutdown trigger rather than by `beginShutdown()`, which the other worker tests call directly.
@Suite(.serialized) struct WorkerLifecycleTests {
    @Test(
        "a graceful shutdown lets the running sync finish and commits it before run() returns",
        .timeLimit(.minutes(2)))
    func gracefulShutdownCommitsTheRunningSync() async throws {
        let harness = try WorkerHarness()
        let fast = ["fast-1", "fast-2", "fast-3"]
        try await harness.publish(
            try (fast + ["slow-1"]).map { (key: $0, value: try WireFormat.encode(try harness.job($0, tick: 1))) })
        let worker = WorkerService(
            configuration: harness.configuration(delivery: .exactlyOnce),
            integrations: IntegrationRegistry([SlowAccountIntegration(slow: "slow-1", delay: .seconds(4))]),
            sealer: harness.sealer, logger: harness.logs.logger)
        let ids = try await testGracefulShutdown { trigger in
            let run = Task { try await worker.run() }
            // The fast accounts' output is committed; the slow account's sync is still running.
            let fastDone = try await eventuallyHolds(interval: .milliseconds(20)) {
                Set(try await harness.activityIds()).isSuperset(of: harness.expectedIds(accounts: fast, ticks: 1))
            }
            #expect(fastDone, "the fast accounts' jobs committed")
            #expect(!(try await harness.activityIds()).contains("fake:slow-1:1"), "the slow sync is still running")
            trigger.triggerGracefulShutdown()
            let clock = ContinuousClock()
            let stopping = try await clock.measure { try await run.value }
            // The slow sync had up to 4 s left; the shutdown deadline (20 s) is not what ended it.
            #expect(stopping < .seconds(15), "run() returned \(stopping) after the trigger")
            return try await harness.activityIds()
        }
        #expect(
            ids.sorted() == harness.expectedIds(accounts: fast + ["slow-1"], ticks: 1).sorted(),
            "every job's output committed exactly once, the one running at the trigger too")
        let runs = try await harness.runs()
        #expect(runs.compactMap(\.accountId).sorted() == (fast + ["slow-1"]).sorted(), "one run record per job")
        #expect(runs.allSatisfy { $0.outcome == .succeeded })
    }

    @Test("a graceful shutdown of an idle worker returns at once and commits nothing", .timeLimit(.minutes(1)))
    func gracefulShutdownOfAnIdleWorker() async throws {
        let harness = try WorkerHarness()
        let worker = harness.worker(harness.configuration(delivery: .exactlyOnce))
        try await testGracefulShutdown { trigger in
            let run = Task { try await worker.run() }
            try await eventually("the worker owns its partitions") {
                harness.logs.contains("partitions assigned and state restored")
            }
            trigger.triggerGracefulShutdown()
            let clock = ContinuousClock()
            let stopping = try await clock.measure { try await run.value }
            #expect(stopping < .seconds(10), "run() returned \(stopping) after the trigger")
        }
        #expect(try await harness.read(harness.topics.activities).isEmpty)
        #expect(try await harness.runs().isEmpty)
    }
}
