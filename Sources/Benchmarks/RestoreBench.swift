import ArgumentParser
import Foundation
import Kafka
import Logging
import Sealing
import Subprocesses
import SyncModel
import Synchronization

/// `activity-sync bench restore`: a worker process restoring one state partition that holds many versions of each
/// account (a state log compaction has not caught up with), measured from outside: restore time from the
/// worker's own log line, peak RSS (`VmHWM`) from /proc.
///
/// Needs a broker that keeps what it is given: the embedded cluster trims each partition to ~5 MB, so run it
/// against a real one (`--bootstrap`), where the partition is filled once and reused by later runs.
struct RestoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Measure a worker's memory and time restoring a long state partition.")

    @Option(help: "Kafka bootstrap servers of a broker with real retention; default: the embedded cluster (small).")
    var bootstrap: String?
    @Option(help: "Accounts in the state partition.") var accounts = 2000
    @Option(help: "State records (versions) per account.") var versions = 200
    @Option(name: .customLong("state-bytes"), help: "Approximate size of one state record.") var stateBytes = 1200
    @Option(name: .customLong("topic-prefix"), help: "Prefix of the bench's topics (one partition each).")
    var topicPrefix = "bench-restore"
    @Option(
        name: .customLong("worker-binary"),
        help:
            "The activity-sync binary to run the worker from (e.g. an older build, for before/after); default: this one."
    )
    var workerBinary: String?

    func run() async throws {
        let command =
            "activity-sync bench restore --accounts \(accounts) --versions \(versions) --state-bytes \(stateBytes)"
            + (bootstrap.map { " --bootstrap \($0)" } ?? "") + " --topic-prefix \(topicPrefix)"
            + (workerBinary.map { " --worker-binary \($0)" } ?? "")
        print("command: \(command)")
        let logger = BenchLogging.bootstrap()
        let topics = TopicNames(prefix: topicPrefix)
        let cluster = try await BenchCluster.make(
            bootstrap: bootstrap, topics: topics, tooSmallFor: "real sizes", logger: logger)
        let servers = cluster.bootstrapServers
        let kafka = KafkaConfiguration(bootstrapServers: servers)
        let (records, bytes) = try await fill(kafka, topic: topics.state, logger: logger)
        print(
            String(
                format: "state partition: %d records, ~%.1f MiB (records × one record's size)", records,
                Double(bytes) / 1_048_576))

        let key = SealingKey.random(id: "bench")
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("bench-key-\(UUID().uuidString)")
        try "bench:\(key.base64)\n".write(to: keyFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: keyFile) }
        var configuration = ChildProcess.Configuration(
            executable: try workerBinary ?? WorkerBench.activitySyncExecutable(),
            arguments: [
                "worker", "--bootstrap", servers, "--topic-prefix", topicPrefix, "--id", "bench-restore-\(getpid())",
                "--github-url", "http://127.0.0.1:9", "--sealing-key-file", keyFile.path,
                "--session-timeout-ms", "6000", "--no-static-membership",
            ])
        configuration.standardOutput = .null
        configuration.standardError = .pipe
        let worker = try ChildProcess(configuration)
        let restoredLine = Mutex<String?>(nil)
        OutputPump.start([worker.standardError!], name: "bench-restore-worker") { _, chunk in
            let text = String(decoding: chunk, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.contains("state restored") }) {
                restoredLine.withLock { $0 = String(line) }
            }
        }
        let started = ContinuousClock.now
        var peakSample = 0
        while restoredLine.withLock({ $0 }) == nil, worker.isRunning, ContinuousClock.now - started < .seconds(600) {
            peakSample = max(peakSample, Self.memory(of: worker.pid).rss)
            try await Task.sleep(for: .milliseconds(100))
        }
        let memory = Self.memory(of: worker.pid)
        worker.send(SIGTERM)
        _ = await worker.wait(timeout: .seconds(30))
        worker.send(SIGKILL)
        await cluster.close()
        guard let line = restoredLine.withLock({ $0 }) else {
            throw ValidationError("the worker did not report a restore (\(String(describing: worker.termination)))")
        }
        let milliseconds = line.split(separator: " ").first { $0.hasPrefix("ms=") }.flatMap { Int($0.dropFirst(3)) }
        let seconds = Double(milliseconds ?? 0) / 1000
        let mib = Double(bytes) / 1_048_576
        print("worker: \(line.split(separator: "state restored").last.map(String.init) ?? line)")
        print("")
        print("| state partition | records | restore | per MiB | worker peak RSS (VmHWM) |")
        print("|---|---:|---:|---:|---:|")
        print(
            String(
                format: "| %.1f MiB | %d | %.1f s | %.1f ms | %.1f MiB |", mib, records, seconds,
                mib > 0 ? seconds * 1000 / mib : 0, Double(max(memory.peak, peakSample)) / 1_048_576))
    }

    /// Produces `accounts × versions` state records into partition 0 unless it already holds them; returns the
    /// partition's record count and approximate bytes.
    private func fill(_ kafka: KafkaConfiguration, topic: String, logger: Logger) async throws -> (Int, Int) {
        let wanted = accounts * versions
        let probe = try KafkaConsumer(
            configuration: ConsumerConfiguration(kafka: kafka, groupId: "bench-restore-probe"), logger: logger)
        let marks = try await probe.watermarks(topic: topic, partition: 0, timeout: .seconds(30))
        await probe.close()
        let record = { (account: Int, version: Int) -> [UInt8] in
            let padding = String(repeating: "x", count: max(0, stateBytes - 300))
            let state = StateRecord(
                accountId: "acct-\(account)", integration: "github",
                lastJob: JobMarker(jobId: "job-\(account)-\(version)", scheduledAt: Date()), updatedAt: Date(),
                data: ["version": .number(Double(version)), "padding": .string(padding)])
            return (try? WireFormat.encode(state)) ?? []
        }
        let size = record(0, 0).count + 10
        if Int(marks.high - marks.low) >= wanted {
            print("state partition already filled (\(marks.high - marks.low) records); not producing")
            return (Int(marks.high - marks.low), Int(marks.high - marks.low) * size)
        }
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka, linger: .milliseconds(20), maxQueuedMessages: 200_000),
            logger: logger)
        let started = ContinuousClock.now
        for version in 0..<versions {
            let batch = (0..<accounts).map { account in
                ProducerRecord(
                    topic: topic, partition: 0, key: Array("acct-\(account)".utf8), value: record(account, version))
            }
            _ = try await producer.send(batch)
        }
        await producer.close()
        print("produced \(wanted) state records in \(ContinuousClock.now - started)")
        return (wanted, wanted * size)
    }

    /// `VmRSS` and `VmHWM` of a process, in bytes (0 when it is gone).
    static func memory(of pid: Int32) -> (rss: Int, peak: Int) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0) }
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return 0 }
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return (field("VmRSS:"), field("VmHWM:"))
    }
}
