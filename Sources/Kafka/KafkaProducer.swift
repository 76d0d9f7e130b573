public import Logging

/// An idempotent producer: `send` completes when the broker acknowledged the records (delivery report).
///
/// Thread-safe; share one per process. Always `close` it: that flushes what is still queued.
public final class KafkaProducer: Sendable {
    private let core: ProducerCore

    /// - Throws: `KafkaError` with code `.invalidConfiguration` (librdkafka's message) or `.clientCreation`.
    public init(configuration: ProducerConfiguration, logger: Logger) throws(KafkaError) {
        core = try ProducerCore(
            properties: configuration.librdkafkaProperties(), logger: logger,
            statisticsHandler: configuration.kafka.statisticsHandler)
    }

    deinit {
        if !core.client.isDestroyed {
            core.client.destroyDetached(pollThread: core.pollThread) { rk in _ = rk.flush(timeoutMilliseconds: 10_000) }
        }
    }

    /// Sends one record and waits for its delivery report.
    /// - Throws: `KafkaError` (`.delivery`) if the record could not be delivered within `message.timeout.ms`.
    public func send(_ record: ProducerRecord) async throws -> RecordMetadata {
        try await core.send([record])[0]
    }

    /// Enqueues every record first, then waits for all delivery reports (one await for the whole batch).
    /// - Returns: where each record landed, in the order of `records`.
    /// - Throws: the first delivery error; the other records may or may not have been delivered.
    public func send(_ records: [ProducerRecord]) async throws -> [RecordMetadata] {
        try await core.send(records)
    }

    /// Waits until everything queued so far is delivered.
    public func flush(timeout: Duration) async throws(KafkaError) {
        try await core.flush(timeout: timeout)
    }

    /// The latest `statistics.interval.ms` JSON, if statistics are on.
    public var latestStatistics: String? { core.client.latestStatistics }

    /// Flushes, then destroys the client; returns within about `timeout` even if the cluster is unreachable
    /// (undelivered records then fail their `send` with a purge error).
    public func close(timeout: Duration = .seconds(10)) async {
        await core.close(timeout: timeout)
    }
}

/// A transactional producer: records (and consumer offsets) become visible atomically on commit.
///
/// Usage: `initTransactions` once, then per unit of work `beginTransaction`, `send`, `sendOffsetsToTransaction`,
/// `commitTransaction`. On an error with `requiresAbort`, call `abortTransaction` and redo the work; on
/// `isFatal` (e.g. fenced by a newer instance with the same transactional id), close and recreate the producer.
public final class KafkaTransactionalProducer: Sendable {
    private let core: ProducerCore

    /// - Throws: `KafkaError` with code `.invalidConfiguration` (librdkafka's message) or `.clientCreation`.
    public init(configuration: TransactionalProducerConfiguration, logger: Logger) throws(KafkaError) {
        core = try ProducerCore(
            properties: configuration.librdkafkaProperties(), logger: logger,
            statisticsHandler: configuration.kafka.statisticsHandler)
    }

    deinit {
        if !core.client.isDestroyed {
            core.client.destroyDetached(pollThread: core.pollThread)
        }
    }

    /// Registers the transactional id with the cluster, fencing older instances, and aborts their open
    /// transaction. Call once before the first transaction.
    public func initTransactions(timeout: Duration) async throws(KafkaError) {
        try await transactionCall("initTransactions") { rk in
            rk.initTransactions(timeout: timeout)
        }
    }

    public func beginTransaction() throws(KafkaError) {
        try core.client.withHandle("beginTransaction") { (rk) throws(KafkaError) in
            if let error = rk.beginTransaction() {
                throw KafkaError.from(error, code: .transaction, context: "beginTransaction")
            }
        }
    }

    /// Sends records inside the current transaction and waits for their delivery reports.
    public func send(_ records: [ProducerRecord]) async throws -> [RecordMetadata] {
        try await core.send(records)
    }

    /// Adds the consumer's offsets (next offsets to read) to the transaction, so they commit atomically with
    /// the records.
    public func sendOffsetsToTransaction(
        _ offsets: [TopicPartitionOffset], groupMetadata: ConsumerGroupMetadata, timeout: Duration
    ) async throws(KafkaError) {
        let metadata = try RDKafkaGroupMetadata(groupMetadata)
        defer { metadata.destroy() }
        try await transactionCall("sendOffsetsToTransaction") { rk in
            rk.sendOffsetsToTransaction(offsets, groupMetadata: metadata, timeout: timeout)
        }
    }

    public func commitTransaction(timeout: Duration) async throws(KafkaError) {
        try await transactionCall("commitTransaction") { rk in
            rk.commitTransaction(timeout: timeout)
        }
    }

    public func abortTransaction(timeout: Duration) async throws(KafkaError) {
        try await transactionCall("abortTransaction") { rk in
            rk.abortTransaction(timeout: timeout)
        }
    }

    /// The latest `statistics.interval.ms` JSON, if statistics are on.
    public var latestStatistics: String? { core.client.latestStatistics }

    /// Destroys the client (an open transaction is aborted by the broker), bounded by `timeout`.
    public func close(timeout: Duration = .seconds(10)) async {
        await core.close(timeout: timeout)
    }

    private func transactionCall(
        _ name: String, _ call: @escaping @Sendable (RDKafkaHandle) -> RDKafkaError?
    ) async throws(KafkaError) {
        try await core.client.blocking(name) { rk -> Result<Void, KafkaError> in
            if let error = call(rk) {
                return .failure(.from(error, code: .transaction, context: name))
            }
            return .success(())
        }
    }
}
