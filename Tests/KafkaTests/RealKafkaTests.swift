import ActivitySyncTesting
import Foundation
import Kafka
import Testing

/// What the mock cluster cannot show (exactly-once visibility, CreateTopics, compaction config): runs only when
/// `KAFKA_BOOTSTRAP_SERVERS` points at a real Kafka (e.g. the docker-compose one).
@Suite(
    "Real Kafka", .enabled(if: ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"] != nil),
    .timeLimit(.minutes(2)))
struct RealKafkaTests {
    let configuration = KafkaConfiguration(
        bootstrapServers: ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"] ?? "")

    @Test("admin creates compacted topics and reports existing ones")
    func createTopics() async throws {
        let admin = try KafkaAdmin(configuration: configuration, logger: testLogger)
        let name = "kafka-tests-\(UUID().uuidString.prefix(8))"
        let topic = NewTopic(name: name, partitions: 3, replicationFactor: 1, configs: ["cleanup.policy": "compact"])
        let first = try await admin.createTopics([topic], timeout: .seconds(30))
        #expect(first.created == [name])
        let second = try await admin.createTopics([topic], timeout: .seconds(30))
        #expect(second.alreadyExisted == [name])
        try await eventually("topic listed", timeout: .seconds(20)) {
            try await admin.listTopics(timeout: .seconds(10))[name] == 3
        }
        await admin.close()
    }

    @Test("read_committed sees committed transactions only")
    func exactlyOnceVisibility() async throws {
        let admin = try KafkaAdmin(configuration: configuration, logger: testLogger)
        let name = "kafka-tests-\(UUID().uuidString.prefix(8))"
        try await admin.createTopics([NewTopic(name: name, partitions: 1)], timeout: .seconds(30))
        await admin.close()
        let producer = try KafkaTransactionalProducer(
            configuration: TransactionalProducerConfiguration(kafka: configuration, transactionalId: name),
            logger: testLogger)
        try await producer.initTransactions(timeout: .seconds(30))
        try producer.beginTransaction()
        _ = try await producer.send([ProducerRecord(topic: name, key: nil, value: bytes("aborted"))])
        try await producer.abortTransaction(timeout: .seconds(30))
        try producer.beginTransaction()
        _ = try await producer.send([ProducerRecord(topic: name, key: nil, value: bytes("committed"))])
        try await producer.commitTransaction(timeout: .seconds(30))
        await producer.close()
        let read = try await readPartitionToEnd(
            configuration: configuration, topic: name, partition: 0, isolationLevel: .readCommitted,
            timeout: .seconds(30), logger: testLogger)
        #expect(read.map { text($0.value) } == ["committed"])
    }

    @Test("a read_committed read to the end waits behind an open transaction for what was committed after it")
    func readToEndPassesTheLastStableOffset() async throws {
        let admin = try KafkaAdmin(configuration: configuration, logger: testLogger)
        let name = "kafka-tests-lso-\(UUID().uuidString.prefix(8))"
        try await admin.createTopics([NewTopic(name: name, partitions: 1)], timeout: .seconds(30))
        await admin.close()
        // A producer that dies with its transaction open (the broker aborts it after 5 s)...
        let crashed = try KafkaTransactionalProducer(
            configuration: TransactionalProducerConfiguration(
                kafka: configuration, transactionalId: "\(name)-crashed", transactionTimeout: .seconds(5)),
            logger: testLogger)
        try await crashed.initTransactions(timeout: .seconds(30))
        try crashed.beginTransaction()
        _ = try await crashed.send([ProducerRecord(topic: name, key: nil, value: bytes("open"))])
        // ...and another that commits after it: the last stable offset stays before "open" meanwhile.
        let other = try KafkaTransactionalProducer(
            configuration: TransactionalProducerConfiguration(kafka: configuration, transactionalId: "\(name)-other"),
            logger: testLogger)
        try await other.initTransactions(timeout: .seconds(30))
        try other.beginTransaction()
        _ = try await other.send([ProducerRecord(topic: name, key: nil, value: bytes("committed-after"))])
        try await other.commitTransaction(timeout: .seconds(30))
        await other.close()
        let started = ContinuousClock.now
        let records = try await readPartitionToEnd(
            configuration: configuration, topic: name, partition: 0, isolationLevel: .readCommitted,
            timeout: .seconds(60), logger: testLogger)
        let values = records.compactMap { $0.value.map { String(decoding: $0, as: UTF8.self) } }
        #expect(values == ["committed-after"], "stopping at the last stable offset would return nothing")
        #expect(ContinuousClock.now - started >= .seconds(2), "it waited for the open transaction to be aborted")
        await crashed.close(timeout: .seconds(5))
    }
}
