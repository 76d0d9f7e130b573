import ActivitySyncTesting
import Foundation
import Kafka
import Testing

@Suite("Failures", .timeLimit(.minutes(2)))
struct ResilienceTests {
    @Test("broker down and up during idempotent produce: nothing lost, nothing duplicated")
    func brokerRestartDuringProduce() async throws {
        let cluster = try makeCluster(brokers: 3)
        try cluster.createTopic("events", partitions: 6, replicationFactor: 3)
        var configuration = ProducerConfiguration(kafka: kafka(cluster))
        configuration.messageTimeout = .seconds(60)
        let producer = try KafkaProducer(configuration: configuration, logger: testLogger)
        let total = 3000
        let sending = Task {
            var delivered = 0
            for batch in 0..<30 {
                let records = (0..<100).map { index in
                    ProducerRecord(
                        topic: "events", key: bytes("k\(index % 17)"), value: bytes("\(batch * 100 + index)"))
                }
                delivered += try await producer.send(records).count
                try await Task.sleep(for: .milliseconds(50))
            }
            return delivered
        }
        try await Task.sleep(for: .milliseconds(300))
        try cluster.setBrokerDown(1)
        try cluster.pushRequestErrors(apiKey: 0, errors: [Int32](repeating: 7, count: 5))  // REQUEST_TIMED_OUT
        try await Task.sleep(for: .seconds(2))
        try cluster.setBrokerUp(1)
        #expect(try await sending.value == total)
        await producer.close()

        var values: [String] = []
        for partition in Int32(0)..<6 {
            values += try await readPartitionToEnd(
                configuration: kafka(cluster), topic: "events", partition: partition,
                isolationLevel: .readUncommitted, timeout: .seconds(20), logger: testLogger
            ).map { text($0.value) }
        }
        #expect(values.count == total, "nothing duplicated")
        #expect(Set(values) == Set((0..<total).map { "\($0)" }), "nothing lost")
        await cluster.close()
    }

    @Test("an invalid configuration fails with librdkafka's message, not a crash")
    func invalidConfiguration() throws {
        var producer = ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: "localhost:1"))
        producer.kafka.properties["no.such.property"] = "1"
        let unknown = try #require(throws: KafkaError.self) {
            _ = try KafkaProducer(configuration: producer, logger: testLogger)
        }
        #expect(unknown.code == .invalidConfiguration)
        #expect(unknown.message.contains("No such configuration property"))
        #expect(unknown.message.contains("no.such.property"))

        var consumer = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: "localhost:1"), groupId: "g")
        consumer.kafka.properties["session.timeout.ms"] = "banana"
        let invalid = try #require(throws: KafkaError.self) {
            _ = try KafkaConsumer(configuration: consumer, logger: testLogger)
        }
        #expect(invalid.code == .invalidConfiguration)
        #expect(invalid.message.contains("session.timeout.ms"))

        var conflicting = ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: "localhost:1"))
        conflicting.kafka.properties["acks"] = "1"  // idempotence needs acks=all
        let refused = try #require(throws: KafkaError.self) {
            _ = try KafkaProducer(configuration: conflicting, logger: testLogger)
        }
        #expect(refused.code == .clientCreation)
        #expect(refused.message.contains("acks"))

        // A credential's value never appears in the error (errors end up in logs).
        var secret = ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: "localhost:1"))
        secret.kafka.properties["enable.sasl.oauthbearer.unsecure.jwt"] = "hunter2-not-a-bool"
        let redacted = try #require(throws: KafkaError.self) {
            _ = try KafkaProducer(configuration: secret, logger: testLogger)
        }
        #expect(redacted.code == .invalidConfiguration)
        #expect(redacted.message.contains("enable.sasl.oauthbearer.unsecure.jwt"))
        #expect(!redacted.description.contains("hunter2"))
    }

    @Test("closing never hangs, even with the cluster gone")
    func closeIsBounded() async throws {
        let cluster = try makeCluster(brokers: 1, topics: ["t": 2])
        let consumer = try groupConsumer(cluster, group: "closing")
        let recorder = EventRecorder()
        try consumer.subscribe(topics: ["t"])
        let loop = Task {
            for await event in consumer.events {
                if case .assigned(let partitions, _) = event { recorder.record(.assigned, partitions) }
            }
        }
        try await eventually("assignment", timeout: .seconds(20)) { !recorder.owned.isEmpty }

        var configuration = ProducerConfiguration(kafka: kafka(cluster))
        configuration.messageTimeout = .seconds(60)
        let producer = try KafkaProducer(configuration: configuration, logger: testLogger)
        _ = try await producer.send(ProducerRecord(topic: "t", key: nil, value: bytes("warm")))
        try cluster.setBrokerDown(1)
        let pending = Task { try await producer.send(ProducerRecord(topic: "t", key: nil, value: bytes("stuck"))) }
        try await Task.sleep(for: .milliseconds(200))

        let clock = ContinuousClock()
        let producerClose = await clock.measure { await producer.close(timeout: .seconds(2)) }
        #expect(producerClose < .seconds(4))
        await #expect(throws: KafkaError.self) { try await pending.value }

        let consumerClose = await clock.measure { await consumer.close(timeout: .seconds(3)) }
        #expect(consumerClose < .seconds(5))
        await loop.value  // events end when the consumer is closed
        await #expect(throws: KafkaError.self) {
            try await consumer.commit([TopicPartitionOffset(topic: "t", partition: 0, offset: 1)])
        }
        await cluster.close()
    }
}
