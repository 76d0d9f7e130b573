import CRdKafka
public import Logging

/// Poll-thread state of a consumer: the batch being collected and the rebalance handling.
// @unchecked Sendable: `pending` is touched only by the thread currently polling the handle — the poll thread,
// or after it exited, the closing thread (rd_kafka_consumer_close serves the final rebalance there).
final class ConsumerPollState: @unchecked Sendable {
    let channel = ConsumerEventChannel()
    let maxBatchSize: Int
    let revocationTimeout: Duration
    let logger: Logger
    private var pending: [ConsumerMessage] = []

    init(maxBatchSize: Int, revocationTimeout: Duration, logger: Logger) {
        self.maxBatchSize = max(1, maxBatchSize)
        self.revocationTimeout = revocationTimeout
        self.logger = logger
    }

    /// One poll-thread iteration: wait up to 100 ms for a message, then take whatever else is ready, as a batch.
    func pollOnce(_ handle: UnsafeHandle) {
        guard let first = rd_kafka_consumer_poll(handle.pointer, 100) else { return }
        take(first, rk: handle.pointer)
        while pending.count < maxBatchSize, let message = rd_kafka_consumer_poll(handle.pointer, 0) {
            take(message, rk: handle.pointer)
        }
        flushPending()
    }

    private func take(_ message: UnsafeMutablePointer<rd_kafka_message_t>, rk: OpaquePointer) {
        defer { rd_kafka_message_destroy(message) }
        let err = message.pointee.err
        if err == RD_KAFKA_RESP_ERR_NO_ERROR {
            pending.append(ConsumerMessage(message))
        } else if err == RD_KAFKA_RESP_ERR__FATAL {
            // A consumer learns of its fatal error (FENCED_INSTANCE_ID, say) here, not through the error callback:
            // it is the consumer's last event, with the underlying code.
            var reason = [CChar](repeating: 0, count: 512)
            let underlying = rd_kafka_fatal_error(rk, &reason, reason.count)
            var error = KafkaError.from(
                underlying == RD_KAFKA_RESP_ERR_NO_ERROR ? err : underlying,
                context:
                    "the consumer failed for good: \(String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))"
            )
            error.isFatal = true
            error.isRetriable = false
            logger.error("consumer fatal error", metadata: ["error": "\(error)"])
            flushPending()
            channel.push(.fatal(error))
        } else if err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
            let text = rd_kafka_message_errstr(message).map { String(cString: $0) } ?? ""
            logger.warning(
                "consumer error: \(text)", metadata: ["kafka.error": "\(String(cString: rd_kafka_err2name(err)))"])
        }
    }

    private func flushPending() {
        guard !pending.isEmpty else { return }
        let batch = pending
        pending = []
        channel.push(.messages(batch))
    }

    /// librdkafka's rebalance callback (eager protocol), on the polling thread.
    func rebalance(
        _ handle: UnsafeHandle, err: rd_kafka_resp_err_t,
        partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
    ) {
        // Messages collected before the rebalance belong to the old assignment: hand them out first.
        flushPending()
        let list = readPartitionList(partitions).map(\.topicPartition)
        let rk = handle.pointer
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            let result = rd_kafka_assign(rk, partitions)
            if result != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.error("assigning \(list) failed: \(String(cString: rd_kafka_err2str(result)))")
            }
            logger.debug("partitions assigned", metadata: ["kafka.partitions": "\(list)"])
            // The generation this assignment belongs to, read here, before the application could see a later one.
            var metadata: ConsumerGroupMetadata?
            if let raw = rd_kafka_consumer_group_metadata(rk) {
                metadata = ConsumerGroupMetadata(serialized: ConsumerGroupMetadata.write(raw))
                rd_kafka_consumer_group_metadata_destroy(raw)
            }
            channel.push(.assigned(list, groupMetadata: metadata))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(rk) != 0
            logger.debug(
                "partitions \(lost ? "lost" : "revoked")", metadata: ["kafka.partitions": "\(list)"])
            if !channel.pushAndAwaitAcknowledgement(lost ? .lost(list) : .revoked(list), timeout: revocationTimeout) {
                logger.warning(
                    "the application did not finish with revoked partitions within \(revocationTimeout); releasing them",
                    metadata: ["kafka.partitions": "\(list)"])
            }
            rd_kafka_assign(rk, nil)
        default:
            logger.error("rebalance error: \(String(cString: rd_kafka_err2str(err)))")
            rd_kafka_assign(rk, nil)
        }
    }
}

/// A consumer-group member with manual commits, handing out rebalances and message batches as one ordered
/// `AsyncSequence` (`events`).
///
/// Offsets are never committed automatically (`enable.auto.commit=false`, `enable.auto.offset.store=false`):
/// commit what you processed with `commit(_:)`, typically on `.revoked` before asking for the next event.
///
/// - Important: keep iterating `events`: the poll thread buffers only a few events ahead, and a rebalance
///   waits (up to `revocationTimeout`) for the application to ask for the event after `.revoked`.
///   The embedded (mock) cluster answers commits made during a rebalance with REBALANCE_IN_PROGRESS (real
///   Kafka accepts them from the current generation), so in tests commit as you go rather than only on revoke.
public final class KafkaConsumer: Sendable {
    private let client: RDKafkaClient
    private let pollThread: PollThread
    private let state: ConsumerPollState

    /// - Throws: `KafkaError` with code `.invalidConfiguration` (librdkafka's message) or `.clientCreation`.
    public init(configuration: ConsumerConfiguration, logger: Logger) throws(KafkaError) {
        let state = ConsumerPollState(
            maxBatchSize: configuration.maxBatchSize, revocationTimeout: configuration.revocationTimeout,
            logger: logger)
        let context = ClientContext(
            logger: logger, statisticsHandler: configuration.kafka.statisticsHandler, consumer: state)
        let client = try RDKafkaClient(
            type: RD_KAFKA_CONSUMER, properties: configuration.librdkafkaProperties(), context: context,
            callbacks: [.rebalance])
        // Serve errors, statistics and rebalances from the consumer queue: one poll call serves everything.
        rd_kafka_poll_set_consumer(client.pointer)
        self.client = client
        self.state = state
        let handle = client.handle
        self.pollThread = PollThread(name: "kafka-consumer-poll") {
            state.pollOnce(handle)
        }
    }

    deinit {
        if !client.isDestroyed {
            state.channel.finish()
            client.destroyDetached(pollThread: pollThread) { rk in _ = rd_kafka_consumer_close(rk) }
        }
    }

    /// Joins the group for these topics (replacing any earlier subscription).
    public func subscribe(topics: [String]) throws(KafkaError) {
        try client.withHandle("subscribe") { (rk) throws(KafkaError) in
            let list = makePartitionList(topics.map { ($0, RD_KAFKA_PARTITION_UA, Int64(RD_KAFKA_OFFSET_INVALID)) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_subscribe(rk, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.from(err, context: "subscribing to \(topics)")
            }
        }
    }

    /// Rebalances and message batches, in order. Iterate from one task.
    public var events: KafkaConsumerEvents { KafkaConsumerEvents(channel: state.channel) }

    /// Commits offsets (each the next offset to read) and waits for the broker's answer.
    public func commit(_ offsets: [TopicPartitionOffset]) async throws(KafkaError) {
        if offsets.isEmpty { return }
        try await client.blocking("commit") { rk -> Result<Void, KafkaError> in
            let list = makePartitionList(offsets)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_commit(rk, list, 0)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .failure(.from(err, context: "committing offsets"))
            }
            for index in 0..<Int(list.pointee.cnt) where list.pointee.elems[index].err != RD_KAFKA_RESP_ERR_NO_ERROR {
                let element = list.pointee.elems[index]
                return .failure(
                    .from(element.err, context: "committing \(String(cString: element.topic))[\(element.partition)]"))
            }
            return .success(())
        }
    }

    /// Starts a commit without waiting for it; failures are logged.
    public func commitAsync(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        if offsets.isEmpty { return }
        try client.withHandle("commitAsync") { (rk) throws(KafkaError) in
            let list = makePartitionList(offsets)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_commit(rk, list, 1)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.from(err, context: "committing offsets")
            }
        }
    }

    /// The group's committed offsets for these partitions (`TopicPartitionOffset.end`-like negative values mean
    /// none committed).
    public func committed(_ partitions: [TopicPartition], timeout: Duration) async throws(KafkaError)
        -> [TopicPartitionOffset]
    {
        try await client.blocking("committed") { rk -> Result<[TopicPartitionOffset], KafkaError> in
            let list = makePartitionList(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(rk, list, timeout.timeoutMilliseconds)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .failure(.from(err, context: "reading committed offsets"))
            }
            return .success(readPartitionList(list))
        }
    }

    /// Stops fetching from these partitions (they stay assigned).
    public func pause(_ partitions: [TopicPartition]) throws(KafkaError) {
        try changePause(partitions, pause: true)
    }

    public func resume(_ partitions: [TopicPartition]) throws(KafkaError) {
        try changePause(partitions, pause: false)
    }

    private func changePause(_ partitions: [TopicPartition], pause: Bool) throws(KafkaError) {
        try client.withHandle(pause ? "pause" : "resume") { (rk) throws(KafkaError) in
            let list = makePartitionList(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = pause ? rd_kafka_pause_partitions(rk, list) : rd_kafka_resume_partitions(rk, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.from(err, context: pause ? "pausing \(partitions)" : "resuming \(partitions)")
            }
        }
    }

    /// Moves the fetch position of an assigned partition.
    public func seek(_ offset: TopicPartitionOffset, timeout: Duration) async throws(KafkaError) {
        try await client.blocking("seek") { rk -> Result<Void, KafkaError> in
            let list = makePartitionList([offset])
            defer { rd_kafka_topic_partition_list_destroy(list) }
            if let error = rd_kafka_seek_partitions(rk, list, timeout.timeoutMilliseconds) {
                return .failure(.consuming(error, context: "seeking \(offset.topic)[\(offset.partition)]"))
            }
            let err = list.pointee.elems[0].err
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .failure(.from(err, context: "seeking \(offset.topic)[\(offset.partition)]"))
            }
            return .success(())
        }
    }

    /// The partition's low and high watermarks (first offset, and the offset the next record will get).
    public func watermarks(topic: String, partition: Int32, timeout: Duration) async throws(KafkaError)
        -> (low: Int64, high: Int64)
    {
        let result = try await client.blocking("watermarks") { rk -> Result<Watermarks, KafkaError> in
            queryWatermarks(rk, topic: topic, partition: partition, timeout: timeout)
        }
        return (result.low, result.high)
    }

    /// The partitions currently assigned to this member.
    public func assignment() throws(KafkaError) -> [TopicPartition] {
        try client.withHandle("assignment") { (rk) throws(KafkaError) -> [TopicPartition] in
            var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
            let err = rd_kafka_assignment(rk, &list)
            defer { if let list { rd_kafka_topic_partition_list_destroy(list) } }
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(err, context: "reading the assignment") }
            return readPartitionList(list).map(\.topicPartition)
        }
    }

    /// This member's group metadata, for `KafkaTransactionalProducer.sendOffsetsToTransaction`.
    public func groupMetadata() throws(KafkaError) -> ConsumerGroupMetadata {
        try client.withHandle("groupMetadata") { (rk) throws(KafkaError) -> ConsumerGroupMetadata in
            guard let metadata = rd_kafka_consumer_group_metadata(rk) else {
                throw KafkaError(code: .librdkafka, message: "no consumer group metadata (is group.id set?)")
            }
            defer { rd_kafka_consumer_group_metadata_destroy(metadata) }
            return ConsumerGroupMetadata(serialized: ConsumerGroupMetadata.write(metadata))
        }
    }

    /// The latest `statistics.interval.ms` JSON, if statistics are on.
    public var latestStatistics: String? { client.latestStatistics }

    /// Leaves the group and destroys the client, waiting at most `timeout`; ends `events`.
    ///
    /// - Important: never hangs: if librdkafka does not finish in time (confluentinc/librdkafka#4674) the handle
    ///   is leaked and an error is logged.
    public func close(timeout: Duration = .seconds(10)) async {
        state.channel.finish()
        await client.destroy(timeout: timeout, pollThread: pollThread) { rk in
            _ = rd_kafka_consumer_close(rk)
        }
    }
}

struct Watermarks: Sendable {
    var low: Int64
    var high: Int64
}

func queryWatermarks(_ rk: OpaquePointer, topic: String, partition: Int32, timeout: Duration) -> Result<
    Watermarks, KafkaError
> {
    var low: Int64 = 0
    var high: Int64 = 0
    let err = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, timeout.timeoutMilliseconds)
    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
        return .failure(.from(err, context: "querying watermarks of \(topic)[\(partition)]"))
    }
    return .success(Watermarks(low: low, high: high))
}
