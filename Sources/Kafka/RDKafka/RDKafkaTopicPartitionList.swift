import CRdKafka

/// Builds and reads librdkafka's `rd_kafka_topic_partition_list_t`, so the rest of the module passes
/// `[TopicPartitionOffset]` and `[TopicPartition]` values instead.
enum RDKafkaTopicPartitionList {
    /// Builds a list; the caller destroys it.
    static func make(_ entries: [(topic: String, partition: Int32, offset: Int64)]) -> UnsafeMutablePointer<
        rd_kafka_topic_partition_list_t
    > {
        let list = rd_kafka_topic_partition_list_new(Int32(entries.count))!
        for entry in entries {
            let element = rd_kafka_topic_partition_list_add(list, entry.topic, entry.partition)!
            element.pointee.offset = entry.offset
        }
        return list
    }

    static func make(_ offsets: [TopicPartitionOffset]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        make(offsets.map { ($0.topic, $0.partition, $0.offset) })
    }

    static func make(_ partitions: [TopicPartition]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        make(partitions.map { ($0.topic, $0.partition, Int64(RD_KAFKA_OFFSET_INVALID)) })
    }

    /// A list of whole topics (any partition, no offset), as `rd_kafka_subscribe` takes it.
    static func make(topics: [String]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        make(topics.map { ($0, RD_KAFKA_PARTITION_UA, Int64(RD_KAFKA_OFFSET_INVALID)) })
    }

    /// Builds the list, runs `body` with it and destroys it.
    static func with<R>(
        _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>,
        _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> R
    ) -> R {
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return body(list)
    }

    static func read(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>?) -> [TopicPartitionOffset] {
        guard let list, let elements = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).map { index in
            let element = elements[index]
            return TopicPartitionOffset(
                topic: String(cString: element.topic), partition: element.partition, offset: element.offset)
        }
    }

    /// The first element librdkafka marked with an error (a per-partition commit or seek result).
    static func firstError(
        _ list: UnsafePointer<rd_kafka_topic_partition_list_t>
    ) -> (topic: String, partition: Int32, code: RDKafkaCode)? {
        for index in 0..<Int(list.pointee.cnt) where list.pointee.elems[index].err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let element = list.pointee.elems[index]
            return (String(cString: element.topic), element.partition, RDKafkaCode(element.err))
        }
        return nil
    }
}
