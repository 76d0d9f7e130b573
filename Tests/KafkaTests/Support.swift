import Foundation
import Kafka
import Logging
import Synchronization
import Testing

/// Quiet by default; `KAFKA_TEST_LOG=debug swift test …` to see librdkafka.
let testLogger: Logger = {
    guard let level = ProcessInfo.processInfo.environment["KAFKA_TEST_LOG"].flatMap({ Logger.Level(rawValue: $0) })
    else { return Logger(label: "KafkaTests", factory: { _ in SwiftLogNoOpLogHandler() }) }
    var logger = Logger(label: "KafkaTests")
    logger.logLevel = level
    return logger
}()

func makeCluster(brokers: Int = 1, topics: [String: Int32] = [:]) throws -> EmbeddedKafkaCluster {
    let cluster = try EmbeddedKafkaCluster(brokers: brokers, logger: testLogger)
    for (name, partitions) in topics {
        try cluster.createTopic(name, partitions: partitions)
    }
    return cluster
}

func kafka(_ cluster: EmbeddedKafkaCluster, _ properties: [String: String] = [:]) -> KafkaConfiguration {
    KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, properties: properties)
}

func groupConsumer(_ cluster: EmbeddedKafkaCluster, group: String, isolation: IsolationLevel = .readCommitted)
    throws -> KafkaConsumer
{
    var configuration = ConsumerConfiguration(kafka: kafka(cluster), groupId: group, isolationLevel: isolation)
    configuration.sessionTimeout = .seconds(6)
    configuration.heartbeatInterval = .milliseconds(500)
    return try KafkaConsumer(configuration: configuration, logger: testLogger)
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]?) -> String { bytes.map { String(decoding: $0, as: UTF8.self) } ?? "<nil>" }

/// Iterates a consumer's events until `done` holds for the messages seen, or `timeout`; returns all messages.
func collectMessages(
    from consumer: KafkaConsumer, timeout: Duration = .seconds(30),
    until done: @escaping @Sendable ([ConsumerMessage]) -> Bool
) async -> [ConsumerMessage] {
    await withTaskGroup(of: [ConsumerMessage]?.self) { group in
        group.addTask {
            var messages: [ConsumerMessage] = []
            for await event in consumer.events {
                if case .messages(let batch) = event {
                    messages += batch
                    if done(messages) { break }
                }
            }
            return messages
        }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        var result: [ConsumerMessage] = []
        while let next = await group.next() {
            if let messages = next {
                result = messages
                group.cancelAll()
            } else {
                group.cancelAll()
            }
        }
        return result
    }
}

/// Records a group member's events with timestamps, from a task iterating its `events`.
final class EventRecorder: Sendable {
    enum Kind: Sendable, Equatable { case assigned, revoked, lost }
    struct Entry: Sendable {
        var kind: Kind
        var partitions: [TopicPartition]
        var at: ContinuousClock.Instant
    }
    private let state = Mutex<(entries: [Entry], messages: [ConsumerMessage], owned: Set<TopicPartition>)>(
        ([], [], []))

    func record(_ kind: Kind, _ partitions: [TopicPartition]) {
        state.withLock {
            $0.entries.append(Entry(kind: kind, partitions: partitions, at: .now))
            switch kind {
            case .assigned: $0.owned.formUnion(partitions)
            case .revoked, .lost: $0.owned.subtract(partitions)
            }
        }
    }

    func record(_ messages: [ConsumerMessage]) { state.withLock { $0.messages += messages } }

    var entries: [Entry] { state.withLock { $0.entries } }
    var messages: [ConsumerMessage] { state.withLock { $0.messages } }
    var owned: Set<TopicPartition> { state.withLock { $0.owned } }
}

func produceKeyed(
    _ producer: KafkaProducer, topic: String, keys: Int, perKey: Int, prefix: String = "k"
) async throws -> [RecordMetadata] {
    var records: [ProducerRecord] = []
    for sequence in 0..<perKey {
        for key in 0..<keys {
            records.append(
                ProducerRecord(topic: topic, key: bytes("\(prefix)\(key)"), value: bytes("\(prefix)\(key):\(sequence)"))
            )
        }
    }
    return try await producer.send(records)
}
