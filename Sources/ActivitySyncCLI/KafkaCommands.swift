import ArgumentParser
import Dispatch
import Foundation
import Kafka
import Logging
import SyncModel
import UnixSignals

/// `activity-sync kafka …`: the embedded (mock) cluster for development and tests.
struct KafkaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Run an embedded Kafka cluster (librdkafka's mock) that other processes can share.",
        subcommands: [KafkaEmbeddedCommand.self]
    )
}

struct KafkaEmbeddedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embedded",
        abstract: "Start a mock cluster with all activity-sync topics; serve until SIGINT/SIGTERM.",
        discussion: """
            The first line of standard output is `bootstrap.servers=HOST:PORT,…`, for scripts and tests to read.
            The mock keeps about 5 MB per partition, has no compaction, and read_committed does not hide aborted
            records: a development stand-in, not a Kafka.
            """
    )

    @Option(help: "Number of mock brokers.")
    var brokers: Int = 3

    @Option(help: "Partitions of every topic.")
    var partitions: Int32 = 12

    @Option(help: "Prefix of the topic names.")
    var topicPrefix: String = "activity-sync"

    func run() async throws {
        let logger = Logger(label: "activity-sync.kafka.embedded")
        // Watch for signals before anything else, so a signal sent right after the first line is not lost.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let cluster = try EmbeddedKafkaCluster(brokers: brokers, logger: logger)
        let names = TopicNames(prefix: topicPrefix).all.map(\.name)
        try cluster.createTopics(names, partitions: partitions, replicationFactor: Int32(min(brokers, 3)))
        print("bootstrap.servers=\(cluster.bootstrapServers)")
        fflush(nil)  // all C streams: the line must reach a pipe reader now, not at exit
        logger.info(
            "embedded Kafka serving",
            metadata: ["bootstrap.servers": "\(cluster.bootstrapServers)", "topics": "\(names)"])
        let signal = await signals.first { _ in true }
        logger.info("stopping embedded Kafka", metadata: ["signal": "\(signal.map { "\($0)" } ?? "none")"])
        await cluster.close()
    }
}

/// `activity-sync topics …`: topic administration on a real cluster.
struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Manage activity-sync's Kafka topics.",
        subcommands: [TopicsCreateCommand.self]
    )
}

struct TopicsCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create all activity-sync topics (compacted where the model says so); existing ones are kept."
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Partitions of every topic (jobs and state must match).")
    var partitions: Int32 = 12

    @Option(help: "Replication factor.")
    var replicationFactor: Int32 = 1

    func run() async throws {
        let kafka = try options.kafka()
        let logger = options.bootstrapLogging("activity-sync.topics", defaultLevel: .info)
        let admin = try KafkaAdmin(configuration: kafka, logger: logger)
        let topics = options.topics.all.map { spec in
            NewTopic(
                name: spec.name, partitions: partitions, replicationFactor: replicationFactor,
                configs: spec.configs)
        }
        let result: CreateTopicsResult
        do {
            result = try await admin.createTopics(topics, timeout: .seconds(30))
        } catch {
            await admin.close()
            throw error
        }
        for name in result.created { print("created \(name)") }
        for name in result.alreadyExisted { print("already existed \(name)") }
        let existing = try await admin.listTopics(timeout: .seconds(10))
        for topic in topics where existing[topic.name].map({ $0 != Int(topic.partitions) }) == true {
            print("warning: \(topic.name) has \(existing[topic.name]!) partitions, not \(topic.partitions)")
        }
        await admin.close()
    }
}
