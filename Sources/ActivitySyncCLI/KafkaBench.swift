import ArgumentParser
import Foundation
import Kafka
import Logging

/// `activity-sync bench …`: throughput measurements (not tests).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks; each prints the command and a markdown table of what it measured.",
        subcommands: [KafkaBenchCommand.self, GitHubBench.self, SchedulerBench.self, WorkerBench.self]
    )
}

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

    @Option(help: "The kcat executable.")
    var kcat: String = "kcat"

    struct Measurement {
        var seconds: Double
        var count: Int
    }

    func run() async throws {
        var logger = Logger(label: "activity-sync.bench.kafka")
        logger.logLevel = .warning
        let cluster = try EmbeddedKafkaCluster(brokers: brokers, logger: logger)
        for topic in ["bench-binding", "bench-kcat"] {
            try cluster.createTopic(topic, partitions: partitions)
        }
        let command =
            "activity-sync bench kafka --messages \(messages) --size \(size) --partitions \(partitions) --brokers \(brokers) --batch \(batch)"
        print("command: \(command)")
        print("bootstrap.servers=\(cluster.bootstrapServers)")

        let bindingProduce = try await produceWithBinding(cluster, logger: logger)
        let bindingConsume = try await consumeWithBinding(cluster, logger: logger)
        let kcatProduce = try produceWithKcat(cluster)
        let kcatConsume = try consumeWithKcat(cluster)
        await cluster.close()

        let megabytes = Double(messages * size) / 1_000_000
        func row(_ name: String, _ produce: Measurement, _ consume: Measurement) -> String {
            String(
                format: "| %@ | %.0f | %.1f | %.0f | %.1f |", name,
                Double(produce.count) / produce.seconds, megabytes / produce.seconds,
                Double(consume.count) / consume.seconds, megabytes / consume.seconds)
        }
        print("")
        print("| Tool | Produce msgs/s | Produce MB/s | Consume msgs/s | Consume MB/s |")
        print("|---|---:|---:|---:|---:|")
        print(row("activity-sync Kafka binding", bindingProduce, bindingConsume))
        print(row("kcat \(kcatVersion())", kcatProduce, kcatConsume))
        print(
            String(
                format: "| binding ÷ kcat | %.2f× | | %.2f× | |", kcatProduce.seconds / bindingProduce.seconds,
                kcatConsume.seconds / bindingConsume.seconds))
        print("")
        print("\(messages) records × \(size) bytes, \(partitions) partitions, \(brokers) mock broker(s).")
        print("kcat produce: kcat -P -b <bootstrap> -t bench-kcat < file-with-\(messages)-lines")
        print("kcat consume: kcat -C -b <bootstrap> -t bench-kcat -e -o beginning -q > /dev/null")
    }

    /// Idempotent producer with our defaults; a few `send` batches in flight so the queue never runs dry.
    func produceWithBinding(_ cluster: EmbeddedKafkaCluster, logger: Logger) async throws -> Measurement {
        var configuration = ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers))
        configuration.maxQueuedMessages = max(100_000, batch * 8)
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
                    repeating: ProducerRecord(topic: "bench-binding", key: nil, value: value), count: count)
                group.addTask { try await producer.send(records).count }
                sent += count
                inFlight += 1
                if inFlight >= 4 {
                    _ = try await group.next()
                    inFlight -= 1
                }
            }
            try await group.waitForAll()
        }
        let seconds = (ContinuousClock.now - start).seconds
        await producer.close()
        return Measurement(seconds: seconds, count: total)
    }

    /// A group consumer; timed from its assignment (the mock's ~3 s group join is not throughput) to the last
    /// record.
    func consumeWithBinding(_ cluster: EmbeddedKafkaCluster, logger: Logger) async throws -> Measurement {
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), groupId: "bench")
        configuration.maxBatchSize = 10_000
        configuration.isolationLevel = .readUncommitted
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        try consumer.subscribe(topics: ["bench-binding"])
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
            }
            if count >= messages { break }
        }
        let seconds = (ContinuousClock.now - start).seconds
        await consumer.close()
        guard bytes == messages * size else {
            throw ValidationError("binding consumed \(count) records / \(bytes) bytes, expected \(messages * size)")
        }
        return Measurement(seconds: seconds, count: count)
    }

    func produceWithKcat(_ cluster: EmbeddedKafkaCluster) throws -> Measurement {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kafka-bench-\(getpid()).txt")
        defer { try? FileManager.default.removeItem(at: file) }
        var line = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        line.append(UInt8(ascii: "\n"))
        var content = [UInt8]()
        content.reserveCapacity(line.count * messages)
        for _ in 0..<messages { content.append(contentsOf: line) }
        try Data(content).write(to: file)
        let input = try FileHandle(forReadingFrom: file)
        defer { try? input.close() }
        let seconds = try runKcat(["-P", "-b", cluster.bootstrapServers, "-t", "bench-kcat"], input: input)
        return Measurement(seconds: seconds, count: messages)
    }

    func consumeWithKcat(_ cluster: EmbeddedKafkaCluster) throws -> Measurement {
        let seconds = try runKcat(
            ["-C", "-b", cluster.bootstrapServers, "-t", "bench-kcat", "-e", "-o", "beginning", "-q"], input: nil)
        return Measurement(seconds: seconds, count: messages)
    }

    func runKcat(_ arguments: [String], input: FileHandle?) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [kcat] + arguments
        if let input { process.standardInput = input }
        process.standardOutput = FileHandle.nullDevice
        let start = ContinuousClock.now
        try process.run()
        process.waitUntilExit()
        let seconds = (ContinuousClock.now - start).seconds
        guard process.terminationStatus == 0 else {
            throw ValidationError("kcat \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        return seconds
    }

    func kcatVersion() -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [kcat, "-V"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        guard (try? process.run()) != nil else { return "" }
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("Version ") }) else { return "" }
        return String(line.split(separator: " ").dropFirst().first ?? "")
    }
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
