import ActivitySyncTesting
import Foundation
import Kafka
import Logging
import Subprocesses
import SyncModel
import Testing

/// A broker restart must not stop any worker: with static membership on, a batch built under the membership from
/// before the restart gets an abortable FENCED_INSTANCE_ID from the group coordinator, which is not "another
/// worker took this id over".
///
/// Needs a broker with real transactions and persistence, and the test must kill and restart it, so it runs only
/// when `KAFKA_BOOTSTRAP_SERVERS` names that broker and `KAFKA_BROKER_COMMAND` is a shell command that starts it in
/// the foreground, on the same ports and data directory every time (the broker must not be running already: the
/// test starts it). Skipped otherwise.
@Suite(
    "Broker restarts on a real Kafka", .serialized, .timeLimit(.minutes(20)),
    .enabled(
        if: RealKafka.bootstrap != nil && RealKafka.brokerCommand != nil,
        "set KAFKA_BOOTSTRAP_SERVERS and KAFKA_BROKER_COMMAND (starts that broker in the foreground) to run these"))
struct BrokerRestartTests {
    /// The broker SIGKILLed with transactions open and restarted from its data, five times: every worker survives and
    /// a read_committed reader sees every id once; then a second process with a worker's --id still stops one of them.
    @Test("five broker kills and restarts stop no worker; a second process with a worker's --id still does")
    func workersSurviveBrokerRestarts() async throws {
        let bootstrap = try #require(RealKafka.bootstrap)
        let command = try #require(RealKafka.brokerCommand)
        let outage = RealKafka.brokerOutage
        var broker = try await BrokerProcess.start(command: command)
        try await RealKafka.createTopics(bootstrap: bootstrap, partitions: RealKafka.partitions)
        // 30 accounts every 5 s, a scheduler and two workers: the issue's setup.
        let pipeline = try await Pipeline(
            accounts: 30, partitions: RealKafka.partitions, schedule: "*/5 * * * * *", realKafka: bootstrap)
        try await pipeline.registerAccounts()
        let run = UUID().uuidString.prefix(6)
        let scheduler = try pipeline.startScheduler("restart-scheduler-\(run)")
        let first = try pipeline.startWorker("restart-a-\(run)")
        let second = try pipeline.startWorker("restart-b-\(run)")
        var processes = [scheduler, first, second]
        func logFile(_ process: ActivitySyncProcess) -> URL {
            // The second process with a worker's --id shares its name: its log gets its own file.
            let second = processes.firstIndex { $0 === process }.map { $0 >= 3 } ?? false
            return FileManager.default.temporaryDirectory.appendingPathComponent(
                "broker-restart-\(process.name)\(second ? "-second" : "").log")
        }
        func saveOutput() {
            for process in processes {
                // Timestamped to the millisecond on arrival, to order one process's log against another's and
                // against the records' timestamps.
                try? process.timestampedStderr.write(to: logFile(process), atomically: true, encoding: .utf8)
            }
        }
        func failWithOutput() {
            // The whole output of each process goes to a file; the failure shows where and how it ended.
            saveOutput()
            for process in processes {
                Issue.record(
                    "\(process.name) (all of it in \(logFile(process).path)): \(process.allOutput.suffix(3000))")
            }
            Issue.record("broker: \(broker.output.suffix(2000))")
        }
        do {
            try await eventually("the first activities", timeout: .seconds(120), interval: .seconds(1)) {
                try await !pipeline.activities().isEmpty
            }
            for round in 1...5 {
                // Transactions are open whenever commits are flowing: both workers commit every 200 ms.
                let committed = try await pipeline.activities().count
                try await eventually(
                    "round \(round): new activities committed before the kill", timeout: .seconds(120),
                    interval: .milliseconds(500)
                ) { try await pipeline.activities().count > committed }
                let killedAt = ContinuousClock.now
                broker.send(SIGKILL)
                _ = try await broker.waitForExit()
                // The outage is the scenario itself, not a wait for something to happen.
                try await Task.sleep(until: killedAt + outage)
                broker = try await BrokerProcess.start(command: command)
                print("round \(round): broker killed and restarted after \(ContinuousClock.now - killedAt)")
                for process in processes {
                    #expect(process.isRunning, "round \(round): \(process.name) exited")
                }
            }
            let checkpoint = Date().addingTimeInterval(10)
            do {
                try await pipeline.waitForCompleteness(until: checkpoint, timeout: .seconds(300))
            } catch {
                // Say what is missing, and whether a read_committed reader sees it at all.
                let seen = Set(try await pipeline.activities().map(\.id))
                let missing = try pipeline.polledTruth(until: checkpoint).required.subtracting(seen)
                let uncommitted = Set(
                    try await TopicReader(bootstrapServers: bootstrap, isolationLevel: .readUncommitted)
                        .readAll(pipeline.topics.activities, partitions: pipeline.partitions)
                        .compactMap { $0.value }
                        .compactMap { try? WireFormat.decode(Envelope<Activity>.self, from: $0).data.id })
                let unwritten = missing.subtracting(uncommitted).count
                // A sync handed a notification version whose output was then rolled back (its partitions moved on)
                // runs again and lists only the thread's current version: say how many of the missing ones that is.
                var newest: [String: String] = [:]
                for version in seen.compactMap(Self.notificationVersion) {
                    newest[version.thread] = max(newest[version.thread] ?? "", version.updatedAt)
                }
                let superseded = missing.compactMap(Self.notificationVersion).filter { version in
                    newest[version.thread].map { $0 > version.updatedAt } ?? false
                }
                // Of those, the kinds the client cannot tell from the subject (an assignment, a review request, a
                // mention in the body: topics.md's documented limit) are lost with the rolled-back batch.
                let recoverable = try pipeline.recoverableVersionIds()
                let documentedLoss = missing.filter { id in
                    guard let version = Self.notificationVersion(id) else { return false }
                    return uncommitted.contains(id) && !recoverable.contains(id)
                        && (newest[version.thread].map { $0 > version.updatedAt } ?? false)
                }
                let sample = Array(missing.sorted().prefix(5))
                let message =
                    "\(missing.count) required ids missing, \(unwritten) of them not even written, \(superseded.count) "
                    + "of them thread versions with a later version committed, \(documentedLoss.count) of those of a "
                    + "kind the client cannot recover: \(sample)"
                let onlyDocumentedLoss = !missing.isEmpty && documentedLoss.count == missing.count
                if onlyDocumentedLoss {
                    // A known limit, said where it is (topics.md), not a pass: shown as a known issue.
                    withKnownIssue(
                        "a delivered thread version whose batch was rolled back is lost when it cannot be recovered"
                    ) {
                        Issue.record("\(message)")
                    }
                } else {
                    Issue.record("\(message)")
                }
                let versions = missing.filter { Self.notificationVersion($0) != nil }.sorted()
                for explanation in try pipeline.explain(missing: versions.prefix(5)) {
                    print(explanation)
                }
                // Repeats are counted even so: an incomplete run may still show them.
                let emitted = try await pipeline.activities()
                var distinct = Set<String>()
                let repeats = emitted.filter { !distinct.insert($0.id).inserted }.map(\.id)
                print(
                    "after five restarts (incomplete): \(emitted.count) activities, \(distinct.count) distinct, "
                        + "\(repeats.count) repeats, \(missing.count) missing; alive: "
                        + processes.map { "\($0.name)=\($0.isRunning)" }.joined(separator: " "))
                #expect(repeats.isEmpty, "a read_committed reader saw \(repeats.count) repeats: \(repeats.prefix(5))")
                if !onlyDocumentedLoss { throw error }
            }
            for process in processes {
                #expect(process.isRunning, "\(process.name) is alive after five broker restarts")
            }
            let emitted = try await pipeline.activities()
            var seen = Set<String>()
            let repeats = emitted.filter { !seen.insert($0.id).inserted }.map(\.id)
            print("after five restarts: \(emitted.count) activities, \(seen.count) distinct, \(repeats.count) repeats")
            #expect(repeats.isEmpty, "a read_committed reader saw \(repeats.count) repeats: \(repeats.prefix(5))")
            #expect(seen.subtracting(try pipeline.truth(until: Date())).isEmpty, "invented ids")

            // Fencing still works: a second process with a running worker's --id stops one of the two, and says why.
            let impostor = try pipeline.startWorker(first.name)
            processes.append(impostor)
            try await eventually("one of the two workers with one --id stops", timeout: .seconds(120)) {
                !first.isRunning || !impostor.isRunning
            }
            let stopped = first.isRunning ? impostor : first
            let status = try await stopped.waitForExit()
            #expect(status == 3, "exit code of \(stopped.name): \(status)")
            #expect(
                stopped.allOutput.contains("Another process with the same --id took over"),
                "the fencing message: \(stopped.allOutput.suffix(1500))")
            #expect(second.isRunning, "the worker with its own id is unaffected")
            // Kept whether or not an expectation failed: a worker that exited is explained by its own output.
            saveOutput()
        } catch {
            failWithOutput()
            await pipeline.shutdown(processes)
            _ = await broker.stop()
            throw error
        }
        await pipeline.shutdown(processes)
        _ = await broker.stop()
    }
}

extension BrokerRestartTests {
    /// `github:notification:{thread}:{updated_at}` split in two; nil for any other id.
    static func notificationVersion(_ id: String) -> (thread: String, updatedAt: String)? {
        let prefix = "github:notification:"
        guard id.hasPrefix(prefix) else { return nil }
        let rest = id.dropFirst(prefix.count)
        guard let colon = rest.firstIndex(of: ":") else { return nil }
        return (String(rest[..<colon]), String(rest[rest.index(after: colon)...]))
    }
}

/// A broker process the test starts, kills and restarts: `/bin/sh -c "exec <command>"`, so the shell becomes the
/// broker and a signal reaches it directly. Its output goes to a file, kept for failure messages. Killed when
/// released, and by the kernel if the test process dies (``ChildProcess``).
final class BrokerProcess: Sendable {
    private let process: ChildProcess
    private let logFile: String

    init(command: String) throws {
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString).log").path
        var configuration = ChildProcess.Configuration(executable: "/bin/sh", arguments: ["-c", "exec \(command)"])
        configuration.standardOutput = .file(logFile)
        configuration.standardError = .standardOutput
        process = try ChildProcess(configuration)
    }

    deinit {
        process.send(SIGKILL)
    }

    /// Starts the broker, again while it exits at once (its port still held by the process just killed, say).
    static func start(command: String, within limit: Duration = .seconds(30)) async throws -> BrokerProcess {
        let deadline = ContinuousClock.now + limit
        while true {
            let broker = try BrokerProcess(command: command)
            guard let early = await broker.process.wait(timeout: .seconds(1)) else { return broker }
            guard ContinuousClock.now < deadline else {
                throw StartFailed(description: "the broker \(early) at start: \(broker.output.suffix(1000))")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    struct StartFailed: Error, CustomStringConvertible {
        var description: String
    }

    var output: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    func send(_ signal: Int32) { process.send(signal) }

    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        guard let termination = await process.wait(timeout: timeout) else {
            throw StillRunning(timeout: timeout)
        }
        return termination.status
    }

    struct StillRunning: Error, CustomStringConvertible {
        var timeout: Duration
        var description: String { "the broker did not exit within \(timeout)" }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    func stop(grace: Duration = .seconds(10)) async -> Int32 {
        send(SIGTERM)
        if let status = try? await waitForExit(timeout: grace) { return status }
        send(SIGKILL)
        return (try? await waitForExit(timeout: .seconds(10))) ?? -1
    }
}

extension RealKafka {
    /// A shell command that starts the broker named by `KAFKA_BOOTSTRAP_SERVERS` in the foreground, on the same
    /// ports and data directory each time.
    static var brokerCommand: String? {
        ProcessInfo.processInfo.environment["KAFKA_BROKER_COMMAND"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// How long the broker stays down each time (`KAFKA_BROKER_OUTAGE_S`, default 5 s).
    static var brokerOutage: Duration {
        .seconds(ProcessInfo.processInfo.environment["KAFKA_BROKER_OUTAGE_S"].flatMap { Int($0) } ?? 5)
    }

    /// Creates activity-sync's topics (existing ones are kept), retrying while the broker is still starting.
    static func createTopics(bootstrap: String, partitions: Int32) async throws {
        let admin = try KafkaAdmin(
            configuration: KafkaConfiguration(bootstrapServers: bootstrap), logger: Logger(label: "test.topics"))
        let topics = TopicNames.default.all.map { spec in
            NewTopic(
                name: spec.name, partitions: partitions, replicationFactor: 1,
                configs: spec.compacted ? ["cleanup.policy": "compact"] : [:])
        }
        try await eventually("the broker takes topics", timeout: .seconds(60), interval: .milliseconds(500)) {
            (try? await admin.createTopics(topics, timeout: .seconds(10))) != nil
        }
        await admin.close()
    }
}
