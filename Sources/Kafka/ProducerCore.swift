import CRdKafka
import Logging
import Synchronization

/// Collects the delivery reports of one `send` call and resumes its caller once all of them arrived.
///
/// Built for high rates: one allocation per batch (not per record), per-record results written to disjoint
/// slots, and one atomic decrement per delivery report; the lock is taken only for errors and the final hand-off.
// @unchecked Sendable: `partitions`/`offsets` slot i is written only by the delivery report of record i (exactly
// once), and read by the waiter only after `remaining` reached 0 (acquire/release ordering); the rest is behind
// `state`.
final class DeliveryBatch: @unchecked Sendable {
    /// What librdkafka carries as each record's opaque: the (unretained) batch and the record's index.
    struct Slot {
        var batch: UnsafeMutableRawPointer
        var index: Int
    }

    private struct State {
        var firstError: KafkaError?
        var finished = false
        var continuation: CheckedContinuation<[RecordMetadata], any Error>?
    }

    private let topics: [String]
    private let partitions: UnsafeMutableBufferPointer<Int32>
    private let offsets: UnsafeMutableBufferPointer<Int64>
    private let slots: UnsafeMutableBufferPointer<Slot>
    private let remaining: Atomic<Int>
    private let state = Mutex(State())

    init(records: [ProducerRecord]) {
        topics = records.map(\.topic)
        partitions = .allocate(capacity: records.count)
        partitions.initialize(repeating: -1)
        offsets = .allocate(capacity: records.count)
        offsets.initialize(repeating: -1)
        slots = .allocate(capacity: records.count)
        remaining = Atomic(records.count)
        let me = Unmanaged.passUnretained(self).toOpaque()
        for index in 0..<records.count {
            slots.initializeElement(at: index, to: Slot(batch: me, index: index))
        }
    }

    deinit {
        partitions.deallocate()
        offsets.deallocate()
        slots.deallocate()
    }

    /// The opaque for record `index`. Valid while the batch lives: the sender holds it until every report came.
    func opaque(for index: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(slots.baseAddress! + index)
    }

    /// Called on the poll thread for each delivery report, or by the sender for a record it could not enqueue.
    func complete(index: Int, partition: Int32, offset: Int64, error: KafkaError?) {
        partitions[index] = partition
        offsets[index] = offset
        if let error {
            state.withLock { if $0.firstError == nil { $0.firstError = error } }
        }
        guard remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return }
        let (continuation, error) = state.withLock { state in
            state.finished = true
            defer { state.continuation = nil }
            return (state.continuation, state.firstError)
        }
        if let continuation { resume(continuation, error: error) }
    }

    /// Waits for every record's delivery report.
    func wait() async throws -> [RecordMetadata] {
        try await withCheckedThrowingContinuation { continuation in
            let ready: (Bool, KafkaError?) = state.withLock { state in
                if state.finished { return (true, state.firstError) }
                state.continuation = continuation
                return (false, nil)
            }
            if ready.0 { resume(continuation, error: ready.1) }
        }
    }

    private func resume(_ continuation: CheckedContinuation<[RecordMetadata], any Error>, error: KafkaError?) {
        if let error {
            continuation.resume(throwing: error)
            return
        }
        _ = remaining.load(ordering: .acquiring)
        var results: [RecordMetadata] = []
        results.reserveCapacity(topics.count)
        for index in 0..<topics.count {
            results.append(RecordMetadata(topic: topics[index], partition: partitions[index], offset: offsets[index]))
        }
        continuation.resume(returning: results)
    }

    /// The delivery-report callback's work (poll thread).
    static func complete(_ message: UnsafePointer<rd_kafka_message_t>, rk: OpaquePointer?) {
        guard let opaque = message.pointee._private else { return }
        let slot = opaque.assumingMemoryBound(to: Slot.self).pointee
        let batch = Unmanaged<DeliveryBatch>.fromOpaque(slot.batch).takeUnretainedValue()
        let err = message.pointee.err
        var error: KafkaError?
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            error = KafkaError.from(err, code: .delivery, context: "delivery failed")
            // After a fatal error (e.g. fenced) every delivery fails, mostly as _PURGE_QUEUE. Report the fatal error
            // itself, with its code: callers decide from it (a fenced producer is not a broken one).
            if let rk {
                var reason = [CChar](repeating: 0, count: 512)
                let fatal = rd_kafka_fatal_error(rk, &reason, reason.count)
                if fatal != RD_KAFKA_RESP_ERR_NO_ERROR {
                    error = KafkaError.from(
                        fatal, code: .delivery,
                        context:
                            "delivery failed (\(String(cString: rd_kafka_err2name(err)))): the producer failed for "
                            + "good: \(String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))"
                    )
                    error?.isFatal = true
                    error?.isRetriable = false
                }
            }
        }
        batch.complete(
            index: slot.index, partition: message.pointee.partition, offset: message.pointee.offset, error: error)
    }
}

/// What both producers share: the handle, its poll thread, enqueueing and delivery tracking, flush and close.
final class ProducerCore: Sendable {
    let client: RDKafkaClient
    let pollThread: PollThread
    /// Topic handles by name: producing through a handle skips librdkafka's per-record topic lookup (a write
    /// lock and a list scan), which costs a lot at high rates. Destroyed before the client.
    private let topics = Mutex<[String: UnsafeHandle]>([:])

    init(properties: [(String, String)], logger: Logger, statisticsHandler: (@Sendable (String) -> Void)?)
        throws(KafkaError)
    {
        let context = ClientContext(logger: logger, statisticsHandler: statisticsHandler)
        let client = try RDKafkaClient(
            type: RD_KAFKA_PRODUCER, properties: properties, context: context, callbacks: [.deliveryReports])
        self.client = client
        let handle = client.handle
        // The only place this producer's events (delivery reports, errors, statistics) are served.
        self.pollThread = PollThread(name: "kafka-producer-poll") {
            rd_kafka_poll(handle.pointer, 100)
        }
    }

    /// Enqueues every record, then awaits all delivery reports.
    func send(_ records: [ProducerRecord]) async throws -> [RecordMetadata] {
        if records.isEmpty { return [] }
        let batch = DeliveryBatch(records: records)
        var next = 0
        while next < records.count {
            let outcome: EnqueueOutcome
            do {
                outcome = try client.withHandle("send") { (rk) throws(KafkaError) -> EnqueueOutcome in
                    var cachedName = ""
                    var cachedTopic: OpaquePointer?
                    while next < records.count {
                        let record = records[next]
                        if cachedTopic == nil || record.topic != cachedName {
                            cachedName = record.topic
                            cachedTopic = topicHandle(rk, record.topic)
                        }
                        if let error = Self.enqueue(
                            record, rk: rk, topic: cachedTopic!, opaque: batch.opaque(for: next))
                        {
                            if error.librdkafkaCode == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue {
                                return .queueFull
                            }
                            return .failed(error)
                        }
                        next += 1
                    }
                    return .done
                }
            } catch {
                outcome = .failed(error)
            }
            switch outcome {
            case .done:
                break
            case .queueFull:
                // librdkafka's local queue is full: give the poll thread time to drain delivery reports.
                try? await Task.sleep(for: .milliseconds(1))
            case .failed(let error):
                for index in next..<records.count {
                    batch.complete(index: index, partition: -1, offset: -1, error: error)
                }
                next = records.count
            }
        }
        return try await batch.wait()
    }

    private func topicHandle(_ rk: OpaquePointer, _ name: String) -> OpaquePointer {
        let rk = UnsafeHandle(pointer: rk)
        return topics.withLock { topics -> UnsafeHandle in
            if let handle = topics[name] { return handle }
            let handle = UnsafeHandle(pointer: rd_kafka_topic_new(rk.pointer, name, nil)!)
            topics[name] = handle
            return handle
        }.pointer
    }

    /// Releases the topic handles; only while closing, after the last `send` left the handle.
    private func destroyTopicHandles() {
        let handles = topics.withLock { topics in
            defer { topics = [:] }
            return Array(topics.values)
        }
        for handle in handles { rd_kafka_topic_destroy(handle.pointer) }
    }

    private enum EnqueueOutcome {
        case done
        case queueFull
        case failed(KafkaError)
    }

    /// An empty, non-nil payload: librdkafka treats a NULL pointer as "no value" (a tombstone).
    // nonisolated(unsafe): allocated once, never written through or freed; librdkafka only reads 0 bytes of it.
    nonisolated(unsafe) private static let emptyPayload: UnsafeMutableRawPointer = .allocate(byteCount: 1, alignment: 1)

    /// `rd_kafka_produceva` (the variadic `producev` is not callable from Swift); copies key, value and headers.
    static func enqueue(
        _ record: ProducerRecord, rk: OpaquePointer, topic: OpaquePointer, opaque: UnsafeMutableRawPointer
    ) -> KafkaError? {
        var headers: OpaquePointer?
        if !record.headers.isEmpty {
            let list = rd_kafka_headers_new(record.headers.count)!
            for header in record.headers {
                if let value = header.value {
                    value.withUnsafeBytes { bytes in
                        _ = rd_kafka_header_add(
                            list, header.key, -1, bytes.baseAddress ?? UnsafeRawPointer(emptyPayload), bytes.count)
                    }
                } else {
                    _ = rd_kafka_header_add(list, header.key, -1, nil, 0)
                }
            }
            headers = list
        }
        let error: OpaquePointer? = withBytes(record.key) { key, keyLength in
            withBytes(record.value) { value, valueLength in
                withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 7) { buffer in
                    var count = 0
                    func add(_ configure: (inout rd_kafka_vu_t) -> Void) {
                        var vu = rd_kafka_vu_t()
                        configure(&vu)
                        buffer.initializeElement(at: count, to: vu)
                        count += 1
                    }
                    add {
                        $0.vtype = RD_KAFKA_VTYPE_RKT; $0.u.rkt = topic
                    }
                    add {
                        $0.vtype = RD_KAFKA_VTYPE_PARTITION
                        $0.u.i32 = record.partition ?? RD_KAFKA_PARTITION_UA
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
                    return rd_kafka_produceva(rk, buffer.baseAddress, count)
                }
            }
        }
        guard let error else { return nil }  // librdkafka owns the headers now
        if let headers { rd_kafka_headers_destroy(headers) }
        return KafkaError.consuming(error, code: .delivery, context: "could not enqueue a record for \(record.topic)")
    }

    private static func withBytes<R>(
        _ bytes: [UInt8]?, _ body: (UnsafeMutableRawPointer?, Int) -> R
    ) -> R {
        guard let bytes else { return body(nil, 0) }
        if bytes.isEmpty { return body(emptyPayload, 0) }
        return bytes.withUnsafeBytes { body(UnsafeMutableRawPointer(mutating: $0.baseAddress!), $0.count) }
    }

    func flush(timeout: Duration) async throws(KafkaError) {
        try await client.blocking("flush") { rk -> Result<Void, KafkaError> in
            let err = rd_kafka_flush(rk, timeout.timeoutMilliseconds)
            if err == RD_KAFKA_RESP_ERR__TIMED_OUT {
                return .failure(.timedOut("flushing \(rd_kafka_outq_len(rk)) queued records", after: timeout))
            }
            return err == RD_KAFKA_RESP_ERR_NO_ERROR ? .success(()) : .failure(.from(err, context: "flush"))
        }
    }

    /// Flushes (most of `timeout`), fails whatever is left, destroys the handle; returns within about `timeout`.
    func close(timeout: Duration) async {
        let flushTimeout = timeout * 0.7
        let logger = client.logger
        await client.destroy(timeout: timeout, pollThread: pollThread) { [self] rk in
            defer { destroyTopicHandles() }
            if rd_kafka_flush(rk, flushTimeout.timeoutMilliseconds) != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning(
                    "closing the producer with \(rd_kafka_outq_len(rk)) records undelivered; they fail with a purge error"
                )
                rd_kafka_purge(rk, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
                // Serve the purge delivery reports so every waiting `send` gets its error.
                _ = rd_kafka_flush(rk, 100)
                rd_kafka_poll(rk, 0)
            }
        }
    }
}
