import Foundation
import Kafka
import Testing

@Suite("Transactional producer", .timeLimit(.minutes(2)))
struct TransactionTests {
    func makeProducer(_ cluster: EmbeddedKafkaCluster, id: String) throws -> KafkaTransactionalProducer {
        try KafkaTransactionalProducer(
            configuration: TransactionalProducerConfiguration(kafka: kafka(cluster), transactionalId: id),
            logger: testLogger)
    }

    @Test("commit and abort paths, with consumer offsets in the transaction")
    func commitAndAbort() async throws {
        let cluster = try makeCluster(topics: ["out": 3, "in": 3])
        let producer = try makeProducer(cluster, id: "worker-0")
        try await producer.initTransactions(timeout: .seconds(20))

        try producer.beginTransaction()
        let delivered = try await producer.send(
            (0..<10).map { ProducerRecord(topic: "out", key: bytes("k\($0)"), value: bytes("committed-\($0)")) })
        #expect(delivered.count == 10)
        try await producer.sendOffsetsToTransaction(
            [TopicPartitionOffset(topic: "in", partition: 0, offset: 5)],
            groupMetadata: ConsumerGroupMetadata(groupId: "g"),
            timeout: .seconds(10))
        try await producer.commitTransaction(timeout: .seconds(10))

        try producer.beginTransaction()
        _ = try await producer.send([ProducerRecord(topic: "out", partition: 0, key: nil, value: bytes("aborted"))])
        try await producer.abortTransaction(timeout: .seconds(10))

        // After an abort the producer is usable again.
        try producer.beginTransaction()
        _ = try await producer.send([ProducerRecord(topic: "out", partition: 0, key: nil, value: bytes("again"))])
        try await producer.commitTransaction(timeout: .seconds(10))

        var values: [String] = []
        for partition in Int32(0)..<3 {
            values += try await readPartitionToEnd(
                configuration: kafka(cluster), topic: "out", partition: partition, isolationLevel: .readUncommitted,
                timeout: .seconds(10), logger: testLogger
            ).map { text($0.value) }
        }
        #expect(values.filter { $0.hasPrefix("committed-") }.count == 10)
        #expect(values.contains("again"))
        await producer.close()
        await cluster.close()
    }

    @Test("an injected PRODUCER_FENCED is fatal")
    func fencedIsFatal() async throws {
        let cluster = try makeCluster(topics: ["out": 1])
        let producer = try makeProducer(cluster, id: "fenced")
        try await producer.initTransactions(timeout: .seconds(20))
        try producer.beginTransaction()
        _ = try await producer.send([ProducerRecord(topic: "out", key: nil, value: bytes("x"))])
        try cluster.pushRequestErrors(apiKey: 26, errors: [90])  // EndTxn → PRODUCER_FENCED
        let error = try await #require(throws: KafkaError.self) {
            try await producer.commitTransaction(timeout: .seconds(10))
        }
        #expect(error.isFatal)
        #expect(!error.requiresAbort)
        #expect(error.code == .transaction)
        // A fatal producer refuses further transactions.
        #expect(throws: KafkaError.self) { try producer.beginTransaction() }
        await producer.close(timeout: .seconds(5))
        await cluster.close()
    }

    @Test("an injected UNKNOWN_MEMBER_ID on TxnOffsetCommit is abortable; the retry commits")
    func unknownMemberIsAbortable() async throws {
        let cluster = try makeCluster(topics: ["out": 1, "in": 1])
        let producer = try makeProducer(cluster, id: "abortable")
        try await producer.initTransactions(timeout: .seconds(20))
        try producer.beginTransaction()
        _ = try await producer.send([ProducerRecord(topic: "out", key: nil, value: bytes("x"))])
        try cluster.pushRequestErrors(apiKey: 28, errors: [25])  // TxnOffsetCommit → UNKNOWN_MEMBER_ID
        let offsets = [TopicPartitionOffset(topic: "in", partition: 0, offset: 1)]
        let error = try await #require(throws: KafkaError.self) {
            try await producer.sendOffsetsToTransaction(
                offsets, groupMetadata: ConsumerGroupMetadata(groupId: "g"), timeout: .seconds(10))
            try await producer.commitTransaction(timeout: .seconds(10))
        }
        #expect(error.requiresAbort)
        #expect(!error.isFatal)
        try await producer.abortTransaction(timeout: .seconds(10))

        try producer.beginTransaction()
        _ = try await producer.send([ProducerRecord(topic: "out", key: nil, value: bytes("y"))])
        try await producer.sendOffsetsToTransaction(
            offsets, groupMetadata: ConsumerGroupMetadata(groupId: "g"), timeout: .seconds(10))
        try await producer.commitTransaction(timeout: .seconds(10))
        await producer.close()
        await cluster.close()
    }
}
