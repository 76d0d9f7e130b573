import Foundation
import Kafka
import Logging
import Synchronization

/// Makes one batch durable: its records and its consumed offsets.
protocol OutputWriter: Sendable {
    func write(_ batch: TransactionBatcher.Batch, offsets: [TopicPartitionOffset], consumer: KafkaConsumer)
        async throws
    func close() async
}

extension OutgoingRecord {
    var producerRecord: ProducerRecord {
        ProducerRecord(
            topic: topic, partition: partition, key: key, value: value,
            headers: headers.map { KafkaHeader(key: $0.key, value: $0.value) })
    }
}

/// Exactly-once: records and offsets in one transaction.
struct TransactionalWriter: OutputWriter {
    let producer: KafkaTransactionalProducer
    let timeout: Duration
    let logger: Logger

    init(configuration: WorkerConfiguration, logger: Logger) async throws {
        let producerConfiguration = TransactionalProducerConfiguration(
            kafka: configuration.kafka, transactionalId: configuration.transactionalId,
            transactionTimeout: configuration.transactionTimeout)
        producer = try KafkaTransactionalProducer(configuration: producerConfiguration, logger: logger)
        timeout = configuration.transactionTimeout
        self.logger = logger
        let initError: KafkaError? = await Self.initTransactions(producer, timeout: timeout)
        if let initError {
            await producer.close(timeout: .seconds(5))
            if initError.isFatal { throw WorkerError.fenced("initialising transactions failed: \(initError)") }
            throw initError
        }
    }

    private static func initTransactions(_ producer: KafkaTransactionalProducer, timeout: Duration) async -> KafkaError? {
        do {
            try await producer.initTransactions(timeout: timeout)
            return nil
        } catch {
            return error
        }
    }

    func write(_ batch: TransactionBatcher.Batch, offsets: [TopicPartitionOffset], consumer: KafkaConsumer)
        async throws
    {
        try producer.beginTransaction()
        guard let failure = await sendAndCommit(batch, offsets: offsets, consumer: consumer) else { return }
        if (failure as? KafkaError)?.isFatal == true { throw failure }
        // Abortable (or retriable): roll back so the retry starts a clean transaction.
        do {
            try await producer.abortTransaction(timeout: timeout)
        } catch {
            logger.warning("abort failed", metadata: ["error": "\(error)"])
            if error.isFatal { throw error }
        }
        throw failure
    }

    private func sendAndCommit(
        _ batch: TransactionBatcher.Batch, offsets: [TopicPartitionOffset], consumer: KafkaConsumer
    ) async -> (any Error)? {
        do {
            _ = try await producer.send((batch.records + batch.stateRecords).map(\.producerRecord))
            if !offsets.isEmpty {
                let metadata = try consumer.groupMetadata()
                try await producer.sendOffsetsToTransaction(offsets, groupMetadata: metadata, timeout: timeout)
            }
            try await producer.commitTransaction(timeout: timeout)
            return nil
        } catch {
            return error
        }
    }

    func close() async { await producer.close(timeout: .seconds(10)) }
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
            configuration: ProducerConfiguration(kafka: configuration.kafka, messageTimeout: configuration.transactionTimeout),
            logger: logger)
    }

    func write(_ batch: TransactionBatcher.Batch, offsets: [TopicPartitionOffset], consumer: KafkaConsumer)
        async throws
    {
        if !delivered.withLock({ $0.contains(batch.id) }) {
            if !batch.records.isEmpty { _ = try await producer.send(batch.records.map(\.producerRecord)) }
            if !batch.stateRecords.isEmpty { _ = try await producer.send(batch.stateRecords.map(\.producerRecord)) }
            delivered.withLock { _ = $0.insert(batch.id) }
        }
        if !offsets.isEmpty { try await consumer.commit(offsets) }
        delivered.withLock { _ = $0.remove(batch.id) }
    }

    func close() async { await producer.close(timeout: .seconds(10)) }
}
