import ActivitySyncTesting
import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import GitHubSimulator
import Sealing
import SyncModel
import Testing
@testable import Worker
import Kafka

/// The `worker` and `tail` commands as operators and the end-to-end tests run them: child processes of the
/// built binary on a cluster and simulator owned by the test.
@Suite(.serialized) struct WorkerCLITests {
    @Test(.timeLimit(.minutes(3)))
    func workerProcessSyncsTailPrintsTheActivitiesAndSigtermExitsCleanly() async throws {
        let harness = try WorkerHarness()
        var simulatorConfiguration = SimulatorConfiguration()
        simulatorConfiguration.users = 3
        simulatorConfiguration.activityInterval = .seconds(24 * 3600)
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        simulatorConfiguration.threadBumps = false

        let simulator = GitHubSimulator(configuration: simulatorConfiguration, logger: harness.logs.logger)
        try await simulator.start()
        defer { Task { await simulator.stop() } }
        let key = SealingKey.random(id: "cli")
        let sealer = Sealer(current: key)
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("worker-cli-\(UUID().uuidString)")
        try "cli:\(key.base64)\n".write(to: keyFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: keyFile) }
        let prefix = String(harness.topics.jobs.dropLast(".jobs".count))
        let scheduledAt = Date()
        var records: [(key: String?, value: [UInt8]?)] = []
        var accounts: [AccountRecord] = []
        for user in simulator.users {
            let job = SyncJob(accountId: String(user.id), integration: "github", scheduledAt: scheduledAt)
            accounts.append(
                harness.account(job.accountId, sealed: try sealer.seal(["access_token": .string(user.token)])))
            records.append((job.accountId, try WireFormat.encode(job)))
        }
        try await harness.register(accounts)
        try await harness.publish(records, registeringAccounts: false)

        let worker = try ActivitySyncProcess(
            "worker",
            arguments: [
                "worker", "--id", "cli-1", "--github-url", simulator.baseURL, "--delivery", "at-least-once",
                "--topic-prefix", prefix, "--group", "\(prefix)-workers", "--session-timeout-ms", "6000",
                "--metrics-port", "0",
            ],
            environment: [
                "ACTIVITY_SYNC_BOOTSTRAP": harness.cluster.bootstrapServers,
                "ACTIVITY_SYNC_SEALING_KEY_FILE": keyFile.path,
            ])
        _ = try await worker.waitForLine { $0.hasPrefix("worker cli-1 starting") }
        let metricsLine = try await worker.waitForLine { $0.hasPrefix("metrics=") }
        try await eventually("every account's state", timeout: .seconds(90)) {
            Set(try await harness.read(harness.topics.state).compactMap(\.key)).count == simulator.users.count
        }
        let metricsURL = URL(string: String(metricsLine.dropFirst("metrics=".count)))!
        let (body, _) = try await URLSession.shared.data(from: metricsURL)
        #expect(String(decoding: body, as: UTF8.self).contains("activity_sync_worker_jobs_total"))

        let tail = try ActivitySyncProcess(
            "tail",
            arguments: [
                "tail", "activities", "--bootstrap", harness.cluster.bootstrapServers, "--topic-prefix", prefix,
                "--from-beginning", "--idle-timeout", "8",
            ])
        #expect(try await tail.waitForExit(timeout: .seconds(60)) == 0)
        var tailedIds = Set<String>()
        for line in tail.stdoutLines where !line.isEmpty {
            let object = try WireFormat.decode(JSONValue.self, from: Array(line.utf8))
            #expect(object["topic"]?.stringValue == harness.topics.activities)
            #expect(object["partition"]?.intValue != nil && object["offset"]?.intValue != nil)
            #expect(object["headers"]?["ce_specversion"] == "1.0")
            #expect(object["value"]?["type"] == "activity")
            if let id = object["value"]?["data"]?["id"]?.stringValue { tailedIds.insert(id) }
        }
        var truth = Set<String>()
        for user in simulator.users {
            truth.formUnion(try simulator.truth(login: user.login, from: scheduledAt - 24 * 3600, to: Date()).map(\.id))
        }
        #expect(tailedIds == truth)

        let status = await worker.stop(grace: .seconds(30))
        #expect(status == 0, "SIGTERM: drain, commit, leave the group, exit 0")
        #expect(worker.stdoutLines.contains { $0.hasPrefix("worker cli-1 stopped") })
        for user in simulator.users { #expect(!worker.allOutput.contains(user.token)) }
    }
}
