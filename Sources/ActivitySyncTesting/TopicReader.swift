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
        // One client for the whole topic; the read interleaves partitions, so regroup them in partition order.
        let (_, messages) = try await readPartitionsToEnd(
            configuration: configuration, topic: topic, partitions: { _ in Array(0..<partitions) },
            isolationLevel: isolationLevel, timeout: .seconds(30), logger: Logger(label: "activity-sync.test.reader"))
        let byPartition = Dictionary(grouping: messages, by: \.partition)
        return (0..<partitions).flatMap { byPartition[$0] ?? [] }
    }
}
