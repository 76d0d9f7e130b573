public import Kafka
import Logging

/// Reads whole topics the way a test wants to see them: every record of every partition, up to the current end.
///
/// It joins no group and commits nothing, so reading never disturbs the consumers under test.
public struct TopicReader: Sendable {
    public let configuration: KafkaConfiguration
    public let isolationLevel: IsolationLevel

    public init(bootstrapServers: String, isolationLevel: IsolationLevel = .readCommitted) {
        self.configuration = KafkaConfiguration(bootstrapServers: bootstrapServers)
        self.isolationLevel = isolationLevel
    }

    /// Every record of `topic` (partitions `0..<partitions`), in partition then offset order.
    public func readAll(_ topic: String, partitions: Int32) async throws -> [ConsumerMessage] {
        var all: [ConsumerMessage] = []
        for partition in 0..<partitions {
            all += try await readPartitionToEnd(
                configuration: configuration, topic: topic, partition: partition, isolationLevel: isolationLevel,
                timeout: .seconds(30), logger: Logger(label: "activity-sync.test.reader"))
        }
        return all
    }
}
