import CRdKafka

// The producers' librdkafka operations: topic handles, enqueueing a record, flush and purge, transactions, and
// the murmur2 partitioner. `ProducerCore` and `KafkaTransactionalProducer` turn the results into `KafkaError`s.

/// A producer's topic handle (`rd_kafka_topic_t *`): producing through one skips librdkafka's per-record topic
/// lookup. Destroy it before the client.
// @unchecked Sendable: librdkafka's topic handles are thread-safe; the pointer itself is immutable.
struct RDKafkaTopic: @unchecked Sendable {
    fileprivate let pointer: OpaquePointer

    func destroy() { rd_kafka_topic_destroy(pointer) }
}

/// An empty, non-nil payload: librdkafka treats a NULL pointer as "no value" (a tombstone).
// nonisolated(unsafe): allocated once, never written through or freed; librdkafka only reads 0 bytes of it.
nonisolated(unsafe) private let emptyPayload: UnsafeMutableRawPointer = .allocate(byteCount: 1, alignment: 1)

extension RDKafkaHandle {
    func newTopic(_ name: String) -> RDKafkaTopic {
        RDKafkaTopic(pointer: rd_kafka_topic_new(pointer, name, nil)!)
    }

    /// Enqueues one record; librdkafka copies key, value and headers (`RD_KAFKA_MSG_F_COPY`), so the record's
    /// arrays are only borrowed for the call. This runs once per record at full produce rate: nothing here
    /// allocates on the heap but librdkafka's header list, and only for a record that has headers.
    /// - Returns: librdkafka's refusal (a full queue, say), or `nil` once the record is enqueued.
    func produce(_ record: ProducerRecord, topic: RDKafkaTopic, opaque: UnsafeMutableRawPointer) -> RDKafkaError? {
        let headers = Self.headerList(record.headers)
        let error: OpaquePointer? = withBytes(record.key) { key, keyLength in
            withBytes(record.value) { value, valueLength in
                produceva(
                    topic: topic, partition: record.partition ?? RD_KAFKA_PARTITION_UA, key: key,
                    keyLength: keyLength, value: value, valueLength: valueLength, headers: headers, opaque: opaque)
            }
        }
        guard let error else { return nil }  // librdkafka owns the headers now
        if let headers { rd_kafka_headers_destroy(headers) }
        return RDKafkaError(consuming: error)
    }

    /// librdkafka's copy of the record's headers, or `nil` when it has none; owned by librdkafka once the record
    /// is enqueued, destroyed by `produce` otherwise. A header without a value is sent as a NULL one.
    private static func headerList(_ headers: [KafkaHeader]) -> OpaquePointer? {
        if headers.isEmpty { return nil }
        let list = rd_kafka_headers_new(headers.count)!
        for header in headers {
            if let value = header.value {
                value.withUnsafeBytes { bytes in
                    _ = rd_kafka_header_add(
                        list, header.key, -1, bytes.baseAddress ?? UnsafeRawPointer(emptyPayload), bytes.count)
                }
            } else {
                _ = rd_kafka_header_add(list, header.key, -1, nil, 0)
            }
        }
        return list
    }

    /// `rd_kafka_produceva`, because the variadic `producev` is not callable from Swift. Its argument array (at
    /// most seven entries) lives on the stack; a missing key or value is left out, which librdkafka reads as NULL.
    private func produceva(
        topic: RDKafkaTopic, partition: Int32, key: UnsafeMutableRawPointer?, keyLength: Int,
        value: UnsafeMutableRawPointer?, valueLength: Int, headers: OpaquePointer?, opaque: UnsafeMutableRawPointer
    ) -> OpaquePointer? {
        withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 7) { buffer in
            var count = 0
            func add(_ configure: (inout rd_kafka_vu_t) -> Void) {
                var vu = rd_kafka_vu_t()
                configure(&vu)
                buffer.initializeElement(at: count, to: vu)
                count += 1
            }
            add {
                $0.vtype = RD_KAFKA_VTYPE_RKT; $0.u.rkt = topic.pointer
            }
            add {
                $0.vtype = RD_KAFKA_VTYPE_PARTITION; $0.u.i32 = partition
            }
            add {
                $0.vtype = RD_KAFKA_VTYPE_MSGFLAGS; $0.u.i = RD_KAFKA_MSG_F_COPY
            }
            add {
                $0.vtype = RD_KAFKA_VTYPE_OPAQUE; $0.u.ptr = opaque
            }
            if let value {
                add {
                    $0.vtype = RD_KAFKA_VTYPE_VALUE; $0.u.mem.ptr = value; $0.u.mem.size = valueLength
                }
            }
            if let key {
                add {
                    $0.vtype = RD_KAFKA_VTYPE_KEY; $0.u.mem.ptr = key; $0.u.mem.size = keyLength
                }
            }
            if let headers {
                add {
                    $0.vtype = RD_KAFKA_VTYPE_HEADERS; $0.u.headers = headers
                }
            }
            defer { buffer.baseAddress!.deinitialize(count: count) }
            return rd_kafka_produceva(pointer, buffer.baseAddress, count)
        }
    }

    private func withBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeMutableRawPointer?, Int) -> R) -> R {
        guard let bytes else { return body(nil, 0) }
        if bytes.isEmpty { return body(emptyPayload, 0) }
        return bytes.withUnsafeBytes { body(UnsafeMutableRawPointer(mutating: $0.baseAddress!), $0.count) }
    }

    /// Waits (blocking) until everything queued is delivered or `timeoutMilliseconds` passed.
    func flush(timeoutMilliseconds: Int32) -> RDKafkaCode {
        RDKafkaCode(rd_kafka_flush(pointer, timeoutMilliseconds))
    }

    /// Records queued or in flight (and other queued events).
    var queuedCount: Int32 { rd_kafka_outq_len(pointer) }

    /// Fails every queued and in-flight record; their delivery reports carry a purge error.
    func purgeQueuedAndInflight() {
        rd_kafka_purge(pointer, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
    }

    // Transactions: each blocking but `beginTransaction`, each returning librdkafka's error object copied out.

    func initTransactions(timeout: Duration) -> RDKafkaError? {
        RDKafkaError(consuming: rd_kafka_init_transactions(pointer, timeout.timeoutMilliseconds))
    }

    func beginTransaction() -> RDKafkaError? {
        RDKafkaError(consuming: rd_kafka_begin_transaction(pointer))
    }

    func sendOffsetsToTransaction(
        _ offsets: [TopicPartitionOffset], groupMetadata: RDKafkaGroupMetadata, timeout: Duration
    ) -> RDKafkaError? {
        RDKafkaTopicPartitionList.with(RDKafkaTopicPartitionList.make(offsets)) { list in
            RDKafkaError(
                consuming: groupMetadata.withPointer {
                    rd_kafka_send_offsets_to_transaction(pointer, list, $0, timeout.timeoutMilliseconds)
                })
        }
    }

    func commitTransaction(timeout: Duration) -> RDKafkaError? {
        RDKafkaError(consuming: rd_kafka_commit_transaction(pointer, timeout.timeoutMilliseconds))
    }

    func abortTransaction(timeout: Duration) -> RDKafkaError? {
        RDKafkaError(consuming: rd_kafka_abort_transaction(pointer, timeout.timeoutMilliseconds))
    }
}

/// The producers' default partitioner for keyed records.
enum RDKafkaPartitioner {
    /// librdkafka's murmur2 partitioner reads only the key (the topic handle and opaques are unused); an empty
    /// key is hashed like any other, which is what `murmur2_random` does for a non-null key.
    static func murmur2(_ key: [UInt8], partitionCount: Int32) -> Int32 {
        key.withUnsafeBytes { bytes in
            rd_kafka_msg_partitioner_murmur2(nil, bytes.baseAddress, bytes.count, partitionCount, nil, nil)
        }
    }
}
