import Foundation
import Kafka
import Logging
import SyncModel
import Synchronization

/// Makes one batch durable: its records and its consumed offsets.
protocol OutputWriter: Sendable {
    /// Writes `batch` and commits `offsets` with `groupMetadata`, the metadata of the assignment the batch was
    /// built in. Returns nil on success; otherwise how it failed, after settling the transaction (never left open).
    ///
    /// - Parameter isCurrent: whether the batch's partitions are still this worker's in the assignment it was built
    ///   in. Asked again right before the offsets go out: a write can outlast the assignment (a broker down for
    ///   longer than the session timeout), and offsets of lost partitions must never be sent.
    func write(
        _ batch: TransactionBatcher.Batch, offsets: [TopicPartitionOffset], groupMetadata: ConsumerGroupMetadata,
        consumer: KafkaConsumer, isCurrent: @escaping @Sendable () -> Bool
    ) async -> TransactionBatcher.CommitFailure?
    func close() async
}

extension OutgoingRecord {
    var producerRecord: ProducerRecord {
        ProducerRecord(
            topic: topic, partition: partition, key: key, value: value,
            headers: headers.map { KafkaHeader(key: $0.key, value: $0.value) })
    }
}

extension TransactionBatcher.CommitFailure {
    /// Classifies a Kafka error by librdkafka's own flags first, then its code (``KafkaError/transactionRecovery``),
    /// never by its text.
    ///
    /// - Parameters:
    ///   - openFor: how long the transaction had been open when the error came, with the producer's
    ///     `transaction.timeout.ms`; nil outside a transaction. A rejected producer epoch after that long is the
    ///     broker's own abort of a transaction it timed out (a brownout), not another worker with our id.
    static func from(
        _ error: any Error, context: String, openFor: (elapsed: Duration, timeout: Duration)? = nil
    ) -> Self {
        guard let error = error as? KafkaError else {
            return .aborted(reason: "\(context): \(error)", rebalancing: false, recordRejected: false)
        }
        let reason = "\(context): \(error)"
        if error.isFatal, error.isProducerEpochRejected, let openFor, openFor.elapsed >= openFor.timeout {
            return .fatal(
                .transactionExpired(
                    "\(reason) (the transaction had been open for \(openFor.elapsed.wholeMilliseconds) ms; "
                        + "transaction.timeout.ms is \(openFor.timeout.wholeMilliseconds))"))
        }
        switch error.transactionRecovery {
        case .fenced:
            return .fatal(.fenced(reason))
        case .fatal:
            return .fatal(.kafkaFatal(reason))
        case .abortStaleMembership:
            // The offsets carried the metadata of a membership that is gone — after a broker restart, this worker's
            // own consumer rejoined under its group.instance.id with a new member id. Nothing else has the id; the
            // revocation or loss that follows settles which partitions are still ours.
            return .aborted(reason: reason, rebalancing: true, recordRejected: false)
        case .abortRecordRejected:
            return .aborted(reason: reason, rebalancing: false, recordRejected: true)
        case .abort, .resume:
            return .aborted(reason: reason, rebalancing: false, recordRejected: false)
        }
    }
}

/// Exactly-once: records and offsets in one transaction, driven as librdkafka's resumable transaction API asks.
///
/// - A retriable error of `send_offsets_to_transaction`, `commit_transaction` or `abort_transaction` (a timeout,
///   a coordinator moving) is answered by calling the *same* function again: the transaction is still in that
///   step, and aborting instead fails with `__CONFLICT` and leaves it open.
/// - An error that requires an abort is answered with `abort_transaction` (itself resumed while retriable); the
///   batch may then be written again in a new transaction. That includes `FENCED_INSTANCE_ID`,
///   `ILLEGAL_GENERATION` and `UNKNOWN_MEMBER_ID` on `send_offsets_to_transaction`: librdkafka flags them abortable
///   because they mean the offsets carry the group metadata of a membership that is gone (after a broker restart,
///   this worker's own consumer rejoined under its `group.instance.id`), not that another process has the id. The
///   loss or revocation that follows drops the batch; it is never re-sent under the old metadata.
/// - A batch whose partitions were lost while its records were being delivered is aborted before its offsets go
///   out.
/// - A rejected producer epoch is not taken as another worker's at once: the broker bumps the epoch itself when it
///   aborts a transaction (one open past `transaction.timeout.ms`; with some brokers, every one open when they
///   crashed). The consumer group decides — see ``recover(from:failure:replacing:)``: the producer is re-created
///   under the same id unless the consumer was fenced meanwhile. Given up, a rejected epoch after the transaction
///   had been open for `transaction.timeout.ms` is reported as the broker's own abort, not as another worker.
/// - Any other fatal error (a broken producer) is final.
/// - A transaction that can be neither committed nor aborted within the bound is reported fatal: the worker
///   stops, and the broker aborts the transaction by `transaction.timeout.ms` or when a restart fences it.
final class TransactionalWriter: OutputWriter {
    /// The producer in use; replaced when the broker rejected its epoch and nothing else has the id.
    private let current: Mutex<KafkaTransactionalProducer>
    private let producerConfiguration: TransactionalProducerConfiguration
    /// Whether the worker is stopping for good (its consumer was fenced, say): then a rejected epoch is final.
    private let isStopped: @Sendable () -> Bool
    /// How long a rejected epoch waits for the consumer group to show another process with this id.
    private let fencingGrace: Duration
    /// When the producer was re-created, to bound it: without static membership nothing else would stop two
    /// processes with one id from fencing each other forever.
    private let recreations = Mutex<[ContinuousClock.Instant]>([])
    static let recreationLimit = 10
    static let recreationWindow = Duration.seconds(600)
    /// Waits between resumptions of one transactional step: 40 ms doubling to 1 s.
    static let resumeBackoff = Backoff(initial: .milliseconds(40), maximum: .seconds(1))
    let timeout: Duration
    let logger: Logger
    /// How long one step may be resumed before the transaction is given up as unsettled.
    let stepBound: Duration
    /// The producer's `transaction.timeout.ms`: a transaction open longer is aborted by the broker itself.
    let transactionTimeout: Duration

    /// - Parameter isStopped: whether the worker stops for good (first reason recorded), asked before a producer
    ///   whose epoch was rejected is replaced.
    init(configuration: WorkerConfiguration, logger: Logger, isStopped: @escaping @Sendable () -> Bool) async throws {
        let producerConfiguration = TransactionalProducerConfiguration(
            kafka: configuration.producerKafka, transactionalId: configuration.transactionalId,
            transactionTimeout: configuration.transactionTimeout)
        let producer = try KafkaTransactionalProducer(configuration: producerConfiguration, logger: logger)
        current = Mutex(producer)
        self.producerConfiguration = producerConfiguration
        self.isStopped = isStopped
        // A second process's consumer joins with our group.instance.id right after its producer took the id; ours
        // learns of it at its next heartbeat (3 s) and fails with a fatal FENCED_INSTANCE_ID.
        fencingGrace = min(configuration.sessionTimeout, .seconds(8))
        timeout = min(configuration.transactionTimeout, .seconds(10))
        stepBound = configuration.transactionTimeout
        transactionTimeout = configuration.transactionTimeout
        self.logger = logger
        let initError: KafkaError? = await Self.initTransactions(producer, timeout: configuration.transactionTimeout)
        if let initError {
            await producer.close(timeout: .seconds(5))
            if initError.isFenced { throw WorkerError.fenced("initialising transactions failed: \(initError)") }
            if initError.isFatal { throw WorkerError.kafkaFatal("initialising transactions failed: \(initError)") }
            throw initError
        }
    }

    private static func initTransactions(_ producer: KafkaTransactionalProducer, timeout: Duration) async -> KafkaError?
    {
        do {
            try await producer.initTransactions(timeout: timeout)
            return nil
        } catch {
            return error
        }
    }

    func write(
        _ batch: TransactionBatcher.Batch, offsets: [TopicPartitionOffset], groupMetadata: ConsumerGroupMetadata,
        consumer: KafkaConsumer, isCurrent: @escaping @Sendable () -> Bool
    ) async -> TransactionBatcher.CommitFailure? {
        let producer = current.withLock { $0 }
        do {
            try producer.beginTransaction()
        } catch {
            return .from(error, context: "beginTransaction")
        }
        let began = ContinuousClock.now
        var failure: TransactionBatcher.CommitFailure
        do {
            _ = try await producer.send((batch.records + batch.stateRecords).map(\.producerRecord))
            if !offsets.isEmpty {
                // Delivery can take as long as the cluster is away; the partitions may have been lost meanwhile.
                // Their offsets must not go out then: abort before sending them rather than learn it from the
                // group coordinator.
                guard isCurrent() else { throw Superseded() }
                try await resuming("sendOffsetsToTransaction") {
                    try await producer.sendOffsetsToTransaction(offsets, groupMetadata: groupMetadata, timeout: timeout)
                }
            }
            try await resuming("commitTransaction") { try await producer.commitTransaction(timeout: timeout) }
            return nil
        } catch let error as Unsettled {
            return .fatal(.transactionFailed("the transaction could not be settled: \(error.reason)"))
        } catch is Superseded {
            failure = .aborted(
                reason: "batch \(batch.id): its partitions were revoked or lost while it was being written",
                rebalancing: true, recordRejected: false)
        } catch {
            failure = .from(
                error, context: "writing batch \(batch.id)", openFor: (ContinuousClock.now - began, transactionTimeout))
            // A broken or fenced producer cannot abort. Anything else leaves no transaction open behind it.
            if let error = error as? KafkaError, error.isFatal {
                return await recover(from: error, failure: failure, replacing: producer)
            }
        }
        // Abortable (a failed delivery, refused offsets, offsets of a membership that is gone, a non-retriable commit
        // error): roll back so that nothing of the batch counts, and a retry starts a clean transaction.
        do {
            try await resuming("abortTransaction") { try await producer.abortTransaction(timeout: timeout) }
        } catch let error as Unsettled {
            return .fatal(.transactionFailed("the transaction could not be aborted: \(error.reason)"))
        } catch {
            let abortFailure = TransactionBatcher.CommitFailure.from(
                error, context: "abortTransaction", openFor: (ContinuousClock.now - began, transactionTimeout))
            if case .fatal = abortFailure, let error = error as? KafkaError {
                return await recover(from: error, failure: abortFailure, replacing: producer)
            }
            if case .fatal = abortFailure { return abortFailure }
            return .fatal(.transactionFailed("the transaction could not be aborted: \(error)"))
        }
        return failure
    }

    /// The batch's partitions are no longer this worker's: the transaction is aborted before its offsets go out.
    private struct Superseded: Error {}

    /// Answers a fatal error of `old`. A rejected epoch (`PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH`, …) means either
    /// that another process took the transactional id over, or that the broker aborted the transaction itself and
    /// bumped the epoch: after `transaction.timeout.ms`, and, with some brokers, for every transaction that was open
    /// when they crashed. The consumer group tells the two apart: a second process with this worker's id also joins
    /// under its `group.instance.id`, and this worker's consumer then fails with a fatal `FENCED_INSTANCE_ID` within
    /// a heartbeat or two, which stops the worker. So wait that long; if the worker is still going, nothing else has
    /// the id, and a new producer takes it back (`init_transactions` aborts whatever the old one left open). The
    /// batch is then written again, in the new producer's first transaction.
    ///
    /// - Returns: `failure` when the error is final; an abort (retry the batch) once the producer was replaced.
    private func recover(
        from error: KafkaError, failure: TransactionBatcher.CommitFailure, replacing old: KafkaTransactionalProducer
    ) async -> TransactionBatcher.CommitFailure {
        guard error.isProducerEpochRejected else { return failure }
        let now = ContinuousClock.now
        let recent = recreations.withLock { times in
            times.removeAll { now - $0 > Self.recreationWindow }
            return times.count
        }
        guard recent < Self.recreationLimit else {
            logger.error(
                "the producer's epoch was rejected \(recent + 1) times in \(Self.recreationWindow); giving up",
                metadata: ["error": "\(error)"])
            return failure
        }
        logger.warning(
            "the broker rejected this producer's epoch; checking that no other process has this id before taking it back",
            metadata: ["error": "\(error)", "wait": "\(fencingGrace)"])
        try? await Task.sleep(for: fencingGrace)
        guard !isStopped() else { return failure }
        let fresh: KafkaTransactionalProducer
        do {
            fresh = try KafkaTransactionalProducer(configuration: producerConfiguration, logger: logger)
        } catch {
            return .fatal(.kafkaFatal("re-creating the producer after \(failure) failed: \(error)"))
        }
        if let initError = await Self.initTransactions(fresh, timeout: stepBound) {
            Task { await fresh.close(timeout: .seconds(5)) }
            return initError.isFenced
                ? .fatal(.fenced("re-initialising transactions failed: \(initError)"))
                : .fatal(.kafkaFatal("re-initialising transactions after \(failure) failed: \(initError)"))
        }
        current.withLock { $0 = fresh }
        recreations.withLock { $0.append(now) }
        // Not awaited: closing a fenced producer may outlast its timeout (confluentinc/librdkafka#4674).
        Task { await old.close(timeout: .seconds(5)) }
        logger.warning("transactions re-initialised under the same id; the batch is written again")
        return .aborted(
            reason: "\(failure.description); the producer was re-created", rebalancing: false, recordRejected: false)
    }

    private struct Unsettled: Error {
        var reason: String
    }

    /// Calls a transaction step again while librdkafka says the same call may succeed: at least once more, and
    /// for up to `stepBound` after the first failure (each call itself may take its whole timeout).
    private func resuming(_ name: String, _ step: () async throws -> Void) async throws {
        var deadline: ContinuousClock.Instant?
        var attempt = 0
        while true {
            do {
                try await step()
                return
            } catch let error as KafkaError {
                guard error.isRetriable, !error.requiresAbort, !error.isFatal else { throw error }
                attempt += 1
                let limit = deadline ?? ContinuousClock.now + stepBound
                deadline = limit
                guard attempt == 1 || ContinuousClock.now < limit else {
                    throw Unsettled(reason: "\(name) still failing after \(attempt) attempts: \(error)")
                }
                logger.info("resuming \(name)", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                try? await Task.sleep(for: Self.resumeBackoff.delay(afterFailures: attempt))
            }
        }
    }

    func close() async { await current.withLock { $0 }.close(timeout: .seconds(10)) }
}

/// At-least-once: activities (and dead letters, status), then state, delivery awaited, then the offsets.
final class AtLeastOnceWriter: OutputWriter {
    let producer: KafkaProducer
    /// Batches whose records were delivered but whose offsets are not committed yet. A retry of such a batch
    /// (the commit failed, e.g. mid-rebalance) only commits: producing again would repeat every activity.
    private let delivered = Mutex<Set<Int>>([])

    init(configuration: WorkerConfiguration, logger: Logger) throws {
        // Bounded delivery: a record the cluster cannot take within this fails the batch (which is retried)
        // instead of holding the commit loop, and shutdown, for librdkafka's default five minutes.
        producer = try KafkaProducer(
            configuration: ProducerConfiguration(
                kafka: configuration.producerKafka, messageTimeout: configuration.transactionTimeout),
            logger: logger)
    }

    func write(
        _ batch: TransactionBatcher.Batch, offsets: [TopicPartitionOffset], groupMetadata: ConsumerGroupMetadata,
        consumer: KafkaConsumer, isCurrent: @escaping @Sendable () -> Bool
    ) async -> TransactionBatcher.CommitFailure? {
        do {
            if !delivered.withLock({ $0.contains(batch.id) }) {
                if !batch.records.isEmpty { _ = try await producer.send(batch.records.map(\.producerRecord)) }
                if !batch.stateRecords.isEmpty {
                    _ = try await producer.send(batch.stateRecords.map(\.producerRecord))
                }
                delivered.withLock { _ = $0.insert(batch.id) }
            }
            if !offsets.isEmpty { try await consumer.commit(offsets) }
            delivered.withLock { _ = $0.remove(batch.id) }
            return nil
        } catch {
            return .from(error, context: "writing batch \(batch.id)")
        }
    }

    func close() async { await producer.close(timeout: .seconds(10)) }
}
