import ActivitySyncTesting
import Foundation
import GitHub
import GitHubSimulator
import IntegrationCatalog
import Kafka
import Logging
import Sealing
import SyncModel
import Testing
@testable import Worker

/// The real GitHub integration against the simulator, through a worker on the embedded cluster.
@Suite(.serialized) struct GitHubWorkerTests {
    @Test(.timeLimit(.minutes(3)), arguments: [DeliveryMode.atLeastOnce, .exactlyOnce])
    func activityIdsEqualTheSimulatorsTruth(delivery: DeliveryMode) async throws {
        let harness = try WorkerHarness()
        var simulatorConfiguration = SimulatorConfiguration()
        simulatorConfiguration.users = 5
        simulatorConfiguration.activityInterval = .seconds(24 * 3600)  // a still world: truth is fixed
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        simulatorConfiguration.threadBumps = false
        let simulator = GitHubSimulator(configuration: simulatorConfiguration, logger: harness.logs.logger)
        try await simulator.start()
        defer { Task { await simulator.stop() } }
        let sealer = Sealer(current: SealingKey.random(id: "k"))
        let scheduledAt = Date()
        var records: [(key: String?, value: [UInt8]?)] = []
        var accounts: [AccountRecord] = []
        for user in simulator.users {
            let job = SyncJob(accountId: String(user.id), integration: "github", scheduledAt: scheduledAt)
            accounts.append(
                harness.account(
                    job.accountId,
                    sealed: try sealer.seal([
                        "access_token": .string(user.token), "refresh_token": .string(user.refreshToken),
                    ])))
            records.append((job.accountId, try WireFormat.encode(job)))
        }
        try await harness.register(accounts)
        try await harness.publish(records, registeringAccounts: false)
        var github = GitHubConfiguration()
        github.baseURL = simulator.baseURL
        let worker = WorkerService(
            configuration: harness.configuration(delivery: delivery),
            integrations: IntegrationRegistry([GitHubIntegration(configuration: github, logger: harness.logs.logger)]),
            sealer: sealer, logger: harness.logs.logger)
        let run = Task { try await worker.run() }
        let states = try await eventuallyHolds {
            Set(try await harness.read(harness.topics.state).compactMap(\.key)).count == simulator.users.count
        }
        worker.beginShutdown()
        try await run.value
        #expect(states, "every account synced")
        var truth = Set<String>()
        for user in simulator.users {
            truth.formUnion(
                try simulator.truth(login: user.login, from: scheduledAt - 24 * 3600, to: Date()).map(\.id))
        }
        let ids = try await harness.activityIds()
        #expect(!truth.isEmpty)
        #expect(Set(ids) == truth, "none missing, none invented")
        #expect(ids.count == Set(ids).count)
        for user in simulator.users {
            for topic in harness.topics.all.map(\.name) {
                for message in try await harness.read(topic) {
                    #expect(!String(decoding: message.value ?? [], as: UTF8.self).contains(user.token))
                }
            }
            #expect(!harness.logs.all.contains { $0.contains(user.token) })
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func aRejectedTokenMarksTheAccountAndWritesAStatusRecord() async throws {
        let harness = try WorkerHarness()
        let simulator = GitHubSimulator(configuration: SimulatorConfiguration(), logger: harness.logs.logger)
        try await simulator.start()
        defer { Task { await simulator.stop() } }
        let sealer = Sealer(current: SealingKey.random(id: "k"))
        let user = try #require(simulator.users.first)
        try simulator.expireToken(login: user.login)
        // No refresh token: a 401 cannot be repaired by the worker.
        let job = SyncJob(accountId: String(user.id), integration: "github", scheduledAt: Date())
        try await harness.register([
            harness.account(job.accountId, sealed: try sealer.seal(["access_token": .string(user.token)]))
        ])
        try await harness.publish([(job.accountId, try WireFormat.encode(job))], registeringAccounts: false)
        var github = GitHubConfiguration()
        github.baseURL = simulator.baseURL
        let worker = WorkerService(
            configuration: harness.configuration(delivery: .atLeastOnce),
            integrations: IntegrationRegistry([GitHubIntegration(configuration: github, logger: harness.logs.logger)]),
            sealer: sealer, logger: harness.logs.logger)
        let run = Task { try await worker.run() }
        let found = try await eventuallyHolds {
            try await harness.read(harness.topics.status).contains { message in
                String(decoding: message.value ?? [], as: UTF8.self).contains("needs_reauth")
            }
        }
        worker.beginShutdown()
        try await run.value
        #expect(found, "a needs_reauth status record")
        // The sync may have had a notifications and an events request in flight; none is retried.
        let rejected = simulator.requests().filter { $0.status == 401 }.count
        #expect(rejected >= 1 && rejected <= 2, "no retry loop: \(rejected) rejected requests")
    }
}
