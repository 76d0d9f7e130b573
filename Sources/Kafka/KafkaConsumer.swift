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
    func pollOnce(_ handle: RDKafkaHandle) {
        guard let first = handle.consumerPoll(timeoutMilliseconds: 100) else { return }
        take(first, handle)
        while pending.count < maxBatchSize, let message = handle.consumerPoll(timeoutMilliseconds: 0) {
            take(message, handle)
        }
        flushPending()
    }

    private func take(_ message: RDKafkaMessage, _ handle: RDKafkaHandle) {
        defer { message.destroy() }
        let err = message.code
        if err == .noError {
            pending.append(ConsumerMessage(message))
        } else if err == .fatal {
            // A consumer learns of its fatal error (FENCED_INSTANCE_ID, say) here, not through the error callback:
            // it is the consumer's last event, with the underlying code.
            let (underlying, reason) = handle.fatalError()
            var error = KafkaError.from(
                underlying == .noError ? err : underlying, context: "the consumer failed for good: \(reason)")
            error.isFatal = true
            error.isRetriable = false
            logger.error("consumer fatal error", metadata: ["error": "\(error)"])
            flushPending()
            channel.push(.fatal(error))
        } else if err != .partitionEOF {
            logger.warning("consumer error: \(message.errorText)", metadata: ["kafka.error": "\(err.name)"])
        }
    }

    private func flushPending() {
        guard !pending.isEmpty else { return }
        let batch = pending
        pending = []
        channel.push(.messages(batch))
    }

    /// librdkafka's rebalance callback (eager protocol), on the polling thread.
    func rebalance(_ rebalance: RDKafkaRebalance) {
        // Messages collected before the rebalance belong to the old assignment: hand them out first.
        flushPending()
        let list = rebalance.partitions
        let handle = rebalance.handle
        switch rebalance.code {
        case .assignPartitions:
            let result = rebalance.assignOffered()
            if result != .noError {
                logger.error("assigning \(list) failed: \(result.text)")
            }
            logger.debug("partitions assigned", metadata: ["kafka.partitions": "\(list)"])
            // The generation this assignment belongs to, read here, before the application could see a later one.
            let metadata = handle.consumerGroupMetadata()
            channel.push(.assigned(list, groupMetadata: metadata))
        case .revokePartitions:
            let lost = handle.isAssignmentLost
            logger.debug(
                "partitions \(lost ? "lost" : "revoked")", metadata: ["kafka.partitions": "\(list)"])
            if !channel.pushAndAwaitAcknowledgement(lost ? .lost(list) : .revoked(list), timeout: revocationTimeout) {
                logger.warning(
                    "the application did not finish with revoked partitions within \(revocationTimeout); releasing them",
                    metadata: ["kafka.partitions": "\(list)"])
            }
            handle.unassign()
        default:
            logger.error("rebalance error: \(rebalance.code.text)")
            handle.unassign()
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
            kind: .consumer, properties: configuration.librdkafkaProperties(), context: context,
            callbacks: [.rebalance])
        // Serve errors, statistics and rebalances from the consumer queue: one poll call serves everything.
        client.handle.serveEventsFromConsumerQueue()
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
            client.destroyDetached(pollThread: pollThread) { rk in rk.closeConsumer() }
        }
    }

    /// Joins the group for these topics (replacing any earlier subscription).
    public func subscribe(topics: [String]) throws(KafkaError) {
        try client.withHandle("subscribe") { (rk) throws(KafkaError) in
            let err = rk.subscribe(topics: topics)
            if err != .noError {
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
            let (err, refused) = rk.commit(offsets, async: false)
            if err != .noError {
                return .failure(.from(err, context: "committing offsets"))
            }
            if let refused {
                return .failure(.from(refused.code, context: "committing \(refused.topic)[\(refused.partition)]"))
            }
            return .success(())
        }
    }

    /// Starts a commit without waiting for it; failures are logged.
    public func commitAsync(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        if offsets.isEmpty { return }
        try client.withHandle("commitAsync") { (rk) throws(KafkaError) in
            let err = rk.commit(offsets, async: true).code
            if err != .noError {
                throw KafkaError.from(err, context: "committing offsets")
            }
        }
    }

    /// The group's committed offsets for these partitions (`TopicPartitionOffset.end`-like negative values mean
    /// none committed). A consumer that failed for good (FENCED_INSTANCE_ID, say) is answered at once with its fatal
    /// error: librdkafka would only time out.
    public func committed(_ partitions: [TopicPartition], timeout: Duration) async throws(KafkaError)
        -> [TopicPartitionOffset]
    {
        try await client.blocking("committed") { rk -> Result<[TopicPartitionOffset], KafkaError> in
            let (underlying, reason) = rk.fatalError()
            if underlying != .noError {
                var error = KafkaError.from(
                    underlying, context: "reading committed offsets: the consumer failed for good: \(reason)")
                error.isFatal = true
                error.isRetriable = false
                return .failure(error)
            }
            let (err, offsets) = rk.committed(partitions, timeout: timeout)
            if err != .noError {
                return .failure(.from(err, context: "reading committed offsets"))
            }
            return .success(offsets)
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
            let err = pause ? rk.pause(partitions) : rk.resume(partitions)
            if err != .noError {
                throw KafkaError.from(err, context: pause ? "pausing \(partitions)" : "resuming \(partitions)")
            }
        }
    }

    /// Moves the fetch position of an assigned partition.
    public func seek(_ offset: TopicPartitionOffset, timeout: Duration) async throws(KafkaError) {
        try await client.blocking("seek") { rk -> Result<Void, KafkaError> in
            if let failure = rk.seek(offset, timeout: timeout) {
                return .failure(.from(failure, context: "seeking \(offset.topic)[\(offset.partition)]"))
            }
            return .success(())
        }
    }

    /// The partition's low and high watermarks (first offset, and the offset the next record will get).
    public func watermarks(topic: String, partition: Int32, timeout: Duration) async throws(KafkaError)
        -> (low: Int64, high: Int64)
    {
        let result = try await client.blocking("watermarks") { rk -> Result<Watermarks, KafkaError> in
            rk.queryWatermarks(topic: topic, partition: partition, timeout: timeout)
        }
        return (result.low, result.high)
    }

    /// The partitions currently assigned to this member.
    public func assignment() throws(KafkaError) -> [TopicPartition] {
        try client.withHandle("assignment") { (rk) throws(KafkaError) -> [TopicPartition] in
            let (err, partitions) = rk.assignment()
            if err != .noError { throw KafkaError.from(err, context: "reading the assignment") }
            return partitions
        }
    }

    /// This member's group metadata, for `KafkaTransactionalProducer.sendOffsetsToTransaction`.
    public func groupMetadata() throws(KafkaError) -> ConsumerGroupMetadata {
        try client.withHandle("groupMetadata") { (rk) throws(KafkaError) -> ConsumerGroupMetadata in
            guard let metadata = rk.consumerGroupMetadata() else {
                throw KafkaError(code: .librdkafka, message: "no consumer group metadata (is group.id set?)")
            }
            return metadata
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
            rk.closeConsumer()
        }
    }
}

struct Watermarks: Sendable {
    var low: Int64
    var high: Int64
}
