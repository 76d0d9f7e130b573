import ArgumentParser
import Foundation
import Kafka
import Logging
import Subprocesses
import SyncModel

/// Our binding against kcat (same librdkafka, same embedded cluster), producing and consuming N records.
struct KafkaBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Produce and consume N records with the Kafka binding and with kcat on an embedded cluster."
    )

    @Option(help: "Records to produce and consume per tool.")
    var messages: Int = 1_000_000

    @Option(help: "Value size in bytes.")
    var size: Int = 200

    @Option(help: "Partitions of each benchmark topic.")
    var partitions: Int32 = 12

    @Option(help: "Mock brokers.")
    var brokers: Int = 1

    @Option(help: "Records per send() call of the binding.")
    var batch: Int = 10_000

    @Option(help: "send() calls of the binding in flight at once.")
    var inFlight: Int = 8

    @Option(help: "Idempotent producer (activity-sync's default; kcat's default is not idempotent).")
    var idempotent: Bool = true

    @Option(help: "Rounds; the table shows each tool's best round (the machine may be shared).")
    var rounds: Int = 3

    @Option(help: "The kcat executable.")
    var kcat: String = "kcat"

    struct Measurement {
        var seconds: Double
        var count: Int
        var rate: Double { Double(count) / seconds }
    }

    func run() async throws {
        var logger = Logger(label: "activity-sync.bench.kafka")
        logger.logLevel = .warning
        let cluster = try EmbeddedKafkaCluster(brokers: brokers, logger: logger)
        let command =
            "activity-sync bench kafka --messages \(messages) --size \(size) --partitions \(partitions) "
            + "--brokers \(brokers) --batch \(batch) --in-flight \(inFlight) --idempotent \(idempotent) --rounds \(rounds)"
        print("command: \(command)")
        print("bootstrap.servers=\(cluster.bootstrapServers)")
        let input = try kcatInputFile()
        defer { try? FileManager.default.removeItem(at: input) }

        var bindingProduce: Measurement?
        var bindingConsume: Measurement?
        var kcatProduce: Measurement?
        var kcatConsume: Measurement?
        func best(_ current: Measurement?, _ new: Measurement) -> Measurement {
            guard let current else { return new }
            return new.rate > current.rate ? new : current
        }
        for round in 1...max(1, rounds) {
            // A fresh topic per tool and round: the mock trims partitions, and reads must start from empty.
            let ours = "bench-binding-\(round)"
            let theirs = "bench-kcat-\(round)"
            try cluster.createTopic(ours, partitions: partitions)
            try cluster.createTopic(theirs, partitions: partitions)
            let produced = try await produceWithBinding(cluster, topic: ours, logger: logger)
            let consumed = try await consumeWithBinding(cluster, topic: ours, logger: logger)
            let kcatProduced = try produceWithKcat(cluster, topic: theirs, input: input)
            let retained = try await retainedRecords(cluster, topic: theirs, logger: logger)
            var kcatConsumed = try consumeWithKcat(cluster, topic: theirs)
            kcatConsumed.count = retained
            print(
                String(
                    format: "round %d: produce %.0f vs %.0f msgs/s, consume %.0f vs %.0f msgs/s (binding vs kcat)",
                    round, produced.rate, kcatProduced.rate, consumed.rate, kcatConsumed.rate))
            bindingProduce = best(bindingProduce, produced)
            bindingConsume = best(bindingConsume, consumed)
            kcatProduce = best(kcatProduce, kcatProduced)
            kcatConsume = best(kcatConsume, kcatConsumed)
        }
        await cluster.close()
        report(bindingProduce!, bindingConsume!, kcatProduce!, kcatConsume!, command: command)
    }

    func report(
        _ bindingProduce: Measurement, _ bindingConsume: Measurement, _ kcatProduce: Measurement,
        _ kcatConsume: Measurement, command: String
    ) {
        func row(_ name: String, _ produce: Measurement, _ consume: Measurement) -> String {
            String(
                format: "| %@ | %.0f | %.1f | %.0f | %.1f |", name,
                Double(produce.count) / produce.seconds, Double(produce.count * size) / 1e6 / produce.seconds,
                Double(consume.count) / consume.seconds, Double(consume.count * size) / 1e6 / consume.seconds)
        }
        print("")
        print("| Tool | Produce msgs/s | Produce MB/s | Consume msgs/s | Consume MB/s |")
        print("|---|---:|---:|---:|---:|")
        print(row("activity-sync Kafka binding", bindingProduce, bindingConsume))
        print(row("kcat \(kcatVersion())", kcatProduce, kcatConsume))
        print(
            String(
                format: "| binding ÷ kcat | %.2f× | | %.2f× | |", bindingProduce.rate / kcatProduce.rate,
                bindingConsume.rate / kcatConsume.rate))
        print("")
        print(
            "\(messages) records × \(size) bytes, \(partitions) partitions, \(brokers) mock broker(s); best of \(rounds) rounds."
        )
        print(
            "Consumed: \(bindingConsume.count) (binding) and \(kcatConsume.count) (kcat) records, all the mock retained "
                + "(it keeps at most ~5 MB / 100k records per partition).")
        print("kcat produce: kcat -P -b <bootstrap> -t bench-kcat-N < file-with-\(messages)-lines")
        print("kcat consume: kcat -C -b <bootstrap> -t bench-kcat-N -e -o beginning -q > /dev/null")
    }

    /// Idempotent producer with our defaults; a few `send` batches in flight so the queue never runs dry.
    func produceWithBinding(_ cluster: EmbeddedKafkaCluster, topic: String, logger: Logger) async throws -> Measurement
    {
        var configuration = ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers))
        configuration.maxQueuedMessages = max(100_000, batch * inFlight)
        configuration.idempotent = idempotent
        let producer = try KafkaProducer(configuration: configuration, logger: logger)
        let value = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        let batchSize = batch
        let total = messages
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Int.self) { group in
            var sent = 0
            var inFlight = 0
            while sent < total {
                let count = min(batchSize, total - sent)
                let records = [ProducerRecord](
                    repeating: ProducerRecord(topic: topic, key: nil, value: value), count: count)
                group.addTask { try await producer.send(records).count }
                sent += count
                inFlight += 1
                if inFlight >= self.inFlight {
                    _ = try await group.next()
                    inFlight -= 1
                }
            }
            try await group.waitForAll()
        }
        let seconds = (ContinuousClock.now - start).timeInterval
        await producer.close()
        return Measurement(seconds: seconds, count: total)
    }

    /// A group consumer; timed from its assignment (the mock's ~3 s group join is not throughput) to the last
    /// record.
    func consumeWithBinding(_ cluster: EmbeddedKafkaCluster, topic: String, logger: Logger) async throws -> Measurement
    {
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), groupId: "bench-\(topic)")
        configuration.maxBatchSize = 10_000
        configuration.isolationLevel = .readUncommitted
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        let target = try await retainedRecords(cluster, topic: topic, logger: logger)
        try consumer.subscribe(topics: [topic])
        var start = ContinuousClock.now
        var count = 0
        var bytes = 0
        for await event in consumer.events {
            switch event {
            case .assigned:
                start = .now
            case .messages(let batch):
                count += batch.count
                for message in batch { bytes += message.value?.count ?? 0 }
            case .revoked, .lost:
                break
            case .fatal(let error):
                throw error
            }
            if count >= target { break }
        }
        let seconds = (ContinuousClock.now - start).timeInterval
        await consumer.close()
        guard bytes == target * size else {
            throw ValidationError("binding consumed \(count) records / \(bytes) bytes, expected \(target * size)")
        }
        return Measurement(seconds: seconds, count: count)
    }

    /// Records the mock still holds (it trims each partition to ~5 MB / 100k records).
    func retainedRecords(_ cluster: EmbeddedKafkaCluster, topic: String, logger: Logger) async throws -> Int {
        let probe = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), groupId: "bench-probe"),
            logger: logger)
        var total = 0
        for partition in 0..<partitions {
            let marks = try await probe.watermarks(topic: topic, partition: partition, timeout: .seconds(10))
            total += Int(marks.high - marks.low)
        }
        await probe.close()
        return total
    }

    /// N lines of `size` bytes: kcat -P sends one record per line.
    func kcatInputFile() throws -> URL {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kafka-bench-\(getpid()).txt")
        var line = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        line.append(UInt8(ascii: "\n"))
        var content = [UInt8]()
        content.reserveCapacity(line.count * messages)
        for _ in 0..<messages { content.append(contentsOf: line) }
        try Data(content).write(to: file)
        return file
    }

    func produceWithKcat(_ cluster: EmbeddedKafkaCluster, topic: String, input file: URL) throws -> Measurement {
        let seconds = try runKcat(["-P", "-b", cluster.bootstrapServers, "-t", topic], input: file.path)
        return Measurement(seconds: seconds, count: messages)
    }

    func consumeWithKcat(_ cluster: EmbeddedKafkaCluster, topic: String) throws -> Measurement {
        let seconds = try runKcat(
            ["-C", "-b", cluster.bootstrapServers, "-t", topic, "-e", "-o", "beginning", "-q"], input: nil)
        return Measurement(seconds: seconds, count: messages)
    }

    /// Runs kcat to completion; blocks the calling task for the measurement, as the binding's side does too.
    func runKcat(_ arguments: [String], input: String?) throws -> Double {
        var configuration = ChildProcess.Configuration(executable: kcat, arguments: arguments)
        if let input { configuration.standardInput = .file(input) }
        configuration.standardOutput = .null
        let start = ContinuousClock.now
        let process = try ChildProcess(configuration)
        let termination = process.waitBlocking()
        let seconds = (ContinuousClock.now - start).timeInterval
        guard termination == .exited(0) else {
            throw ValidationError("kcat \(arguments.joined(separator: " ")) \(termination)")
        }
        return seconds
    }

    func kcatVersion() -> String {
        var configuration = ChildProcess.Configuration(executable: kcat, arguments: ["-V"])
        configuration.standardOutput = .pipe
        configuration.standardError = .standardOutput
        guard let process = try? ChildProcess(configuration), let output = process.standardOutput else { return "" }
        // A few lines, read to EOF on this (bench) task, as before.
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        close(output)
        _ = process.waitBlocking()
        let text = String(decoding: bytes, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Version ") }) else { return "" }
        return String(line.split(separator: " ").dropFirst().first ?? "")
    }
}
