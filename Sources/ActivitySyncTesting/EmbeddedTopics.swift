public import Kafka
public import Logging
public import SyncModel

/// An embedded (mock) Kafka cluster holding activity-sync's topics under a prefix of their own: the cluster
/// every test that runs our services on Kafka starts from.
public struct EmbeddedTopics: Sendable {
    public let cluster: EmbeddedKafkaCluster
    public let topics: TopicNames
    public let partitions: Int32
    public let logger: Logger

    /// - Parameters:
    ///   - prefix: the topic prefix; random by default, so tests sharing a process never see each other's records.
    ///   - only: the topics to create (all of activity-sync's by default).
    public init(
        partitions: Int32 = 4, brokers: Int = 1, prefix: String? = nil, only: [String]? = nil,
        logger: Logger = Logger(label: "activity-sync.test.cluster") { _ in SwiftLogNoOpLogHandler() }
    ) throws {
        self.logger = logger
        self.partitions = partitions
        cluster = try EmbeddedKafkaCluster(brokers: brokers, logger: logger)
        topics = TopicNames(prefix: prefix ?? "t\(UInt32.random(in: 0...UInt32.max))")
        try cluster.createTopics(only ?? topics.all.map(\.name), partitions: partitions)
    }

    public var kafka: KafkaConfiguration { KafkaConfiguration(bootstrapServers: cluster.bootstrapServers) }

    /// Produces `records` with one idempotent producer and waits until all are acknowledged.
    public func produce(_ records: [ProducerRecord]) async throws {
        let producer = try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka), logger: logger)
        _ = try await producer.send(records)
        await producer.close(timeout: .seconds(5))
    }

    /// Every record of `topic`, as a `read_committed` reader sees it.
    public func read(_ topic: String) async throws -> [ConsumerMessage] {
        try await TopicReader(bootstrapServers: cluster.bootstrapServers).readAll(topic, partitions: partitions)
    }
}
