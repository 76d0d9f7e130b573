import CRdKafka
import Foundation

// The consumer's librdkafka operations: polling, rebalance answers, subscriptions, commits, positions, group
// metadata. Each returns Swift values; `KafkaConsumer`, `PartitionReader` and `PartitionFollower` decide what the
// codes mean to their callers.

/// A message `rd_kafka_consumer_poll` returned: a record, or an event (EOF, an error) in its `code`.
///
/// Borrowed from librdkafka until `destroy()`; `ConsumerMessage(_:)` copies a record out.
struct RDKafkaMessage {
    fileprivate let pointer: UnsafeMutablePointer<rd_kafka_message_t>

    var code: RDKafkaCode { RDKafkaCode(pointer.pointee.err) }
    var partition: Int32 { pointer.pointee.partition }
    var offset: Int64 { pointer.pointee.offset }
    /// librdkafka's text for an event that carries an error.
    var errorText: String { rd_kafka_message_errstr(pointer).map { String(cString: $0) } ?? "" }

    func destroy() { rd_kafka_message_destroy(pointer) }
}

extension ConsumerMessage {
    /// Copies a fetched message out of librdkafka's memory.
    init(_ polled: RDKafkaMessage) {
        let message = UnsafePointer(polled.pointer)
        let raw = message.pointee
        let topic = raw.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        let key: [UInt8]? =
            raw.key.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: raw.key_len)) }
        let value: [UInt8]? =
            raw.payload.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: raw.len)) }
        var headers: [KafkaHeader] = []
        var headerList: OpaquePointer?
        let mutableMessage = UnsafeMutablePointer(mutating: message)
        if rd_kafka_message_headers(mutableMessage, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
            let count = rd_kafka_header_cnt(headerList)
            headers.reserveCapacity(count)
            for index in 0..<count {
                var name: UnsafePointer<CChar>?
                var valuePointer: UnsafeRawPointer?
                var size = 0
                if rd_kafka_header_get_all(headerList, index, &name, &valuePointer, &size)
                    == RD_KAFKA_RESP_ERR_NO_ERROR, let name
                {
                    let headerValue = valuePointer.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) }
                    headers.append(KafkaHeader(key: String(cString: name), value: headerValue))
                }
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let milliseconds = rd_kafka_message_timestamp(message, &timestampType)
        let timestamp =
            milliseconds >= 0 ? Date(timeIntervalSince1970: Double(milliseconds) / 1000) : nil
        self.init(
            topic: topic, partition: raw.partition, offset: raw.offset, key: key, value: value, headers: headers,
            timestamp: timestamp)
    }
}

/// One call of librdkafka's rebalance callback (eager protocol), on the polling thread.
struct RDKafkaRebalance {
    let handle: RDKafkaHandle
    /// `.assignPartitions`, `.revokePartitions`, or the error that stopped the rebalance.
    let code: RDKafkaCode
    let partitions: [TopicPartition]
    private let list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?

    init(handle: RDKafkaHandle, code: RDKafkaCode, list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        self.handle = handle
        self.code = code
        self.list = list
        self.partitions = RDKafkaTopicPartitionList.read(list).map(\.topicPartition)
    }

    /// Takes the offered partitions with librdkafka's own list (their positions as the group gave them).
    func assignOffered() -> RDKafkaCode {
        RDKafkaCode(rd_kafka_assign(handle.pointer, list))
    }
}

/// librdkafka's group metadata object, reconstructed from `ConsumerGroupMetadata`'s bytes for
/// `sendOffsetsToTransaction`; the caller destroys it.
// @unchecked Sendable: librdkafka only reads it; it is destroyed after the last call that uses it returned.
struct RDKafkaGroupMetadata: @unchecked Sendable {
    fileprivate let pointer: OpaquePointer

    init(_ metadata: ConsumerGroupMetadata) throws(KafkaError) {
        var pointer: OpaquePointer?
        let error = metadata.serialized.withUnsafeBytes { bytes in
            rd_kafka_consumer_group_metadata_read(&pointer, bytes.baseAddress, bytes.count)
        }
        if let error {
            throw KafkaError.from(RDKafkaError(consuming: error), context: "reading consumer group metadata")
        }
        self.pointer = pointer!
    }

    func destroy() { rd_kafka_consumer_group_metadata_destroy(pointer) }

    func withPointer<R>(_ body: (OpaquePointer) -> R) -> R { body(pointer) }

    /// The bytes of metadata for a group id alone (no member id or generation).
    static func serialized(groupId: String) -> [UInt8] {
        let metadata = rd_kafka_consumer_group_metadata_new(groupId)!
        defer { rd_kafka_consumer_group_metadata_destroy(metadata) }
        return write(metadata)
    }

    fileprivate static func write(_ metadata: OpaquePointer) -> [UInt8] {
        var buffer: UnsafeMutableRawPointer?
        var size = 0
        guard let error = rd_kafka_consumer_group_metadata_write(metadata, &buffer, &size) as OpaquePointer?
        else {
            defer { rd_kafka_mem_free(nil, buffer) }
            return buffer.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
        }
        rd_kafka_error_destroy(error)
        return []
    }
}

extension RDKafkaHandle {
    /// Serves errors, statistics and rebalances from the consumer queue, so one poll call serves everything.
    func serveEventsFromConsumerQueue() {
        rd_kafka_poll_set_consumer(pointer)
    }

    /// The next message or event, waiting at most `timeoutMilliseconds`; destroy it when done.
    func consumerPoll(timeoutMilliseconds: Int32) -> RDKafkaMessage? {
        rd_kafka_consumer_poll(pointer, timeoutMilliseconds).map { RDKafkaMessage(pointer: $0) }
    }

    /// Leaves the group (serving the final rebalance on this thread); blocking.
    func closeConsumer() {
        _ = rd_kafka_consumer_close(pointer)
    }

    func subscribe(topics: [String]) -> RDKafkaCode {
        RDKafkaTopicPartitionList.with(RDKafkaTopicPartitionList.make(topics: topics)) { list in
            RDKafkaCode(rd_kafka_subscribe(pointer, list))
        }
    }

    /// Commits offsets; blocking unless `async`. A blocking commit also reports the first partition the broker
    /// refused (librdkafka marks each partition of the list with its own result).
    func commit(
        _ offsets: [TopicPartitionOffset], async: Bool
    ) -> (code: RDKafkaCode, refused: (topic: String, partition: Int32, code: RDKafkaCode)?) {
        RDKafkaTopicPartitionList.with(RDKafkaTopicPartitionList.make(offsets)) { list in
            let code = RDKafkaCode(rd_kafka_commit(pointer, list, async ? 1 : 0))
            if code != .noError || async { return (code, nil) }
            return (code, RDKafkaTopicPartitionList.firstError(list))
        }
    }

    /// The group's committed offsets for these partitions; blocking.
    func committed(_ partitions: [TopicPartition], timeout: Duration) -> (RDKafkaCode, [TopicPartitionOffset]) {
        RDKafkaTopicPartitionList.with(RDKafkaTopicPartitionList.make(partitions)) { list in
            let code = RDKafkaCode(rd_kafka_committed(pointer, list, timeout.timeoutMilliseconds))
            return (code, code == .noError ? RDKafkaTopicPartitionList.read(list) : [])
        }
    }

    func pause(_ partitions: [TopicPartition]) -> RDKafkaCode {
        RDKafkaTopicPartitionList.with(RDKafkaTopicPartitionList.make(partitions)) { list in
            RDKafkaCode(rd_kafka_pause_partitions(pointer, list))
        }
    }

    func resume(_ partitions: [TopicPartition]) -> RDKafkaCode {
        RDKafkaTopicPartitionList.with(RDKafkaTopicPartitionList.make(partitions)) { list in
            RDKafkaCode(rd_kafka_resume_partitions(pointer, list))
        }
    }

    /// Moves the fetch position of an assigned partition; blocking.
    func seek(_ offset: TopicPartitionOffset, timeout: Duration) -> RDKafkaFailure? {
        RDKafkaTopicPartitionList.with(RDKafkaTopicPartitionList.make([offset])) { list in
            if let error = RDKafkaError(consuming: rd_kafka_seek_partitions(pointer, list, timeout.timeoutMilliseconds))
            {
                return .error(error)
            }
            let code = RDKafkaCode(list.pointee.elems[0].err)
            return code == .noError ? nil : .code(code)
        }
    }

    /// A partition's low and high watermarks; blocking.
    func queryWatermarks(topic: String, partition: Int32, timeout: Duration) -> Result<Watermarks, KafkaError> {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(
            pointer, topic, partition, &low, &high, timeout.timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            return .failure(.from(RDKafkaCode(err), context: "querying watermarks of \(topic)[\(partition)]"))
        }
        return .success(Watermarks(low: low, high: high))
    }

    /// The partitions currently assigned.
    func assignment() -> (RDKafkaCode, [TopicPartition]) {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        let code = RDKafkaCode(rd_kafka_assignment(pointer, &list))
        defer { if let list { rd_kafka_topic_partition_list_destroy(list) } }
        return (code, code == .noError ? RDKafkaTopicPartitionList.read(list).map(\.topicPartition) : [])
    }

    /// Assigns these partitions at these offsets (no group involved: the reader's own assignment).
    func assign(_ offsets: [TopicPartitionOffset]) -> RDKafkaCode {
        RDKafkaTopicPartitionList.with(RDKafkaTopicPartitionList.make(offsets)) { list in
            RDKafkaCode(rd_kafka_assign(pointer, list))
        }
    }

    /// Drops the whole assignment.
    func unassign() {
        rd_kafka_assign(pointer, nil)
    }

    /// Whether the partitions being revoked were lost (the member fell out of the group) rather than handed over.
    var isAssignmentLost: Bool { rd_kafka_assignment_lost(pointer) != 0 }

    /// This member's group metadata, or `nil` when it has none (no `group.id`).
    func consumerGroupMetadata() -> ConsumerGroupMetadata? {
        guard let metadata = rd_kafka_consumer_group_metadata(pointer) else { return nil }
        defer { rd_kafka_consumer_group_metadata_destroy(metadata) }
        return ConsumerGroupMetadata(serialized: RDKafkaGroupMetadata.write(metadata))
    }
}
