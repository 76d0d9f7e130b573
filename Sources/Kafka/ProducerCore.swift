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

    /// The delivery-report callback's work (poll thread): `opaque` is the record's `Slot`.
    static func complete(
        opaque: UnsafeMutableRawPointer, partition: Int32, offset: Int64, code err: RDKafkaCode,
        handle: RDKafkaHandle?
    ) {
        let slot = opaque.assumingMemoryBound(to: Slot.self).pointee
        let batch = Unmanaged<DeliveryBatch>.fromOpaque(slot.batch).takeUnretainedValue()
        var error: KafkaError?
        if err != .noError {
            error = KafkaError.from(err, code: .delivery, context: "delivery failed")
            // After a fatal error (e.g. fenced) every delivery fails, mostly as _PURGE_QUEUE. Report the fatal error
            // itself, with its code: callers decide from it (a fenced producer is not a broken one).
            if let handle {
                let (fatal, reason) = handle.fatalError()
                if fatal != .noError {
                    error = KafkaError.from(
                        fatal, code: .delivery,
                        context: "delivery failed (\(err.name)): the producer failed for good: \(reason)")
                    error?.isFatal = true
                    error?.isRetriable = false
                }
            }
        }
        batch.complete(index: slot.index, partition: partition, offset: offset, error: error)
    }
}

/// What both producers share: the handle, its poll thread, enqueueing and delivery tracking, flush and close.
final class ProducerCore: Sendable {
    let client: RDKafkaClient
    let pollThread: PollThread
    /// Topic handles by name: producing through a handle skips librdkafka's per-record topic lookup (a write
    /// lock and a list scan), which costs a lot at high rates. Destroyed before the client.
    private let topics = Mutex<[String: RDKafkaTopic]>([:])

    init(properties: [(String, String)], logger: Logger, statisticsHandler: (@Sendable (String) -> Void)?)
        throws(KafkaError)
    {
        let context = ClientContext(logger: logger, statisticsHandler: statisticsHandler)
        let client = try RDKafkaClient(
            kind: .producer, properties: properties, context: context, callbacks: [.deliveryReports])
        self.client = client
        let handle = client.handle
        // The only place this producer's events (delivery reports, errors, statistics) are served.
        self.pollThread = PollThread(name: "kafka-producer-poll") {
            handle.poll(timeoutMilliseconds: 100)
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
                    var cachedTopic: RDKafkaTopic?
                    while next < records.count {
                        let record = records[next]
                        if cachedTopic == nil || record.topic != cachedName {
                            cachedName = record.topic
                            cachedTopic = topicHandle(rk, record.topic)
                        }
                        if let error = Self.enqueue(
                            record, rk: rk, topic: cachedTopic!, opaque: batch.opaque(for: next))
                        {
                            if error.librdkafkaCode == RDKafkaCode.queueFull.rawValue {
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

    private func topicHandle(_ rk: RDKafkaHandle, _ name: String) -> RDKafkaTopic {
        topics.withLock { topics -> RDKafkaTopic in
            if let topic = topics[name] { return topic }
            let topic = rk.newTopic(name)
            topics[name] = topic
            return topic
        }
    }

    /// Releases the topic handles; only while closing, after the last `send` left the handle.
    private func destroyTopicHandles() {
        let handles = topics.withLock { topics in
            defer { topics = [:] }
            return Array(topics.values)
        }
        for topic in handles { topic.destroy() }
    }

    private enum EnqueueOutcome {
        case done
        case queueFull
        case failed(KafkaError)
    }

    /// Enqueues one record (librdkafka copies it); a refusal becomes a `.delivery` error naming the topic, whose
    /// code tells `send` whether to wait for room in the queue.
    static func enqueue(
        _ record: ProducerRecord, rk: RDKafkaHandle, topic: RDKafkaTopic, opaque: UnsafeMutableRawPointer
    ) -> KafkaError? {
        guard let error = rk.produce(record, topic: topic, opaque: opaque) else { return nil }
        return KafkaError.from(error, code: .delivery, context: "could not enqueue a record for \(record.topic)")
    }

    func flush(timeout: Duration) async throws(KafkaError) {
        try await client.blocking("flush") { rk -> Result<Void, KafkaError> in
            let err = rk.flush(timeoutMilliseconds: timeout.timeoutMilliseconds)
            if err == .timedOut {
                return .failure(.timedOut("flushing \(rk.queuedCount) queued records", after: timeout))
            }
            return err == .noError ? .success(()) : .failure(.from(err, context: "flush"))
        }
    }

    /// Flushes (most of `timeout`), fails whatever is left, destroys the handle; returns within about `timeout`.
    func close(timeout: Duration) async {
        let flushTimeout = timeout * 0.7
        let logger = client.logger
        await client.destroy(timeout: timeout, pollThread: pollThread) { [self] rk in
            defer { destroyTopicHandles() }
            if rk.flush(timeoutMilliseconds: flushTimeout.timeoutMilliseconds) != .noError {
                logger.warning(
                    "closing the producer with \(rk.queuedCount) records undelivered; they fail with a purge error"
                )
                rk.purgeQueuedAndInflight()
                // Serve the purge delivery reports so every waiting `send` gets its error.
                _ = rk.flush(timeoutMilliseconds: 100)
                rk.poll(timeoutMilliseconds: 0)
            }
        }
    }
}
