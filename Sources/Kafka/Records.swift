public import Foundation

/// A Kafka record header. A `nil` value is a header with no value (distinct from an empty one).
public struct KafkaHeader: Sendable, Hashable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// A record to produce. A `nil` partition lets the configured partitioner pick one from the key.
public struct ProducerRecord: Sendable, Hashable {
    public var topic: String
    public var partition: Int32?
    public var key: [UInt8]?
    /// `nil` produces a tombstone (deletes the key in a compacted topic).
    public var value: [UInt8]?
    public var headers: [KafkaHeader]

    public init(
        topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// Where a produced record landed, from its delivery report.
public struct RecordMetadata: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
}

public struct TopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A position in a partition. For commits, `offset` is the next offset to read (last processed + 1), as Kafka
/// expects.
public struct TopicPartitionOffset: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }

    /// librdkafka's logical offset for "the first available offset".
    public static let beginning: Int64 = -2
    /// librdkafka's logical offset for "the next offset to be written".
    public static let end: Int64 = -1
}

/// A consumed record.
public struct ConsumerMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [KafkaHeader]
    /// The record's timestamp (create or log-append time), when the broker gave one.
    public var timestamp: Date?

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = [],
        timestamp: Date? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// The first header with this key, if any.
    public func header(_ key: String) -> [UInt8]? {
        headers.first { $0.key == key }?.value ?? nil
    }

    /// The position to commit once this message is processed.
    public var nextOffset: TopicPartitionOffset {
        TopicPartitionOffset(topic: topic, partition: partition, offset: offset + 1)
    }
}

/// Which records a consumer sees: with `readCommitted`, records of open or aborted transactions are hidden.
public enum IsolationLevel: String, Sendable, Hashable {
    case readCommitted = "read_committed"
    case readUncommitted = "read_uncommitted"
}

/// Where a consumer group starts on a partition without a committed offset.
public enum AutoOffsetReset: String, Sendable, Hashable {
    case earliest
    case latest
    case error
}

/// A consumer's group membership (group id, generation, member id), serialized by librdkafka.
///
/// A transactional producer passes this to `sendOffsetsToTransaction` so the broker can fence zombie members.
/// It is a value (bytes) so it can cross tasks freely.
public struct ConsumerGroupMetadata: Sendable, Hashable {
    let serialized: [UInt8]

    init(serialized: [UInt8]) {
        self.serialized = serialized
    }

    /// Metadata for a group id alone (no member id or generation), for tools and tests that commit offsets for
    /// a group without being a member of it.
    public init(groupId: String) {
        self.init(serialized: RDKafkaGroupMetadata.serialized(groupId: groupId))
    }
}
