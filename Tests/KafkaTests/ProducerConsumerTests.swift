import ActivitySyncTesting
import Foundation
import Kafka
import Testing

@Suite("Produce and consume", .timeLimit(.minutes(2)))
struct ProducerConsumerTests {
    @Test("round trip with keys and headers across 12 partitions keeps per-key order")
    func roundTrip() async throws {
        let cluster = try makeCluster(topics: ["events": 12])
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka(cluster)), logger: testLogger)
        var records: [ProducerRecord] = []
        for sequence in 0..<8 {
            for key in 0..<100 {
                records.append(
                    ProducerRecord(
                        topic: "events", key: bytes("account-\(key)"), value: bytes("\(key):\(sequence)"),
                        headers: [
                            KafkaHeader(key: "ce_type", value: bytes("test.v1")),
                            KafkaHeader(key: "empty", value: []),
                            KafkaHeader(key: "none", value: nil),
                        ]))
            }
        }
        records.append(ProducerRecord(topic: "events", key: bytes("tombstone"), value: nil))
        let metadata = try await producer.send(records)
        #expect(metadata.count == records.count)
        #expect(Set(metadata.map(\.partition)).count == 12, "100 keys should reach all 12 partitions")
        let single = try await producer.send(ProducerRecord(topic: "events", partition: 3, key: nil, value: bytes("x")))
        #expect(single.partition == 3)
        await producer.close()

        let consumer = try groupConsumer(cluster, group: "round-trip")
        try consumer.subscribe(topics: ["events"])
        let expected = records.count + 1
        let messages = await collectMessages(from: consumer) { $0.count >= expected }
        await consumer.close()

        #expect(messages.count == records.count + 1)
        var partitionOfKey: [String: Int32] = [:]
        var lastSequence: [String: Int] = [:]
        for message in messages where message.key != nil && message.value != nil && message.key != bytes("tombstone") {
            let key = text(message.key)
            #expect(
                partitionOfKey[key, default: message.partition] == message.partition, "a key stays on one partition")
            partitionOfKey[key] = message.partition
            let sequence = Int(text(message.value).split(separator: ":")[1])!
            #expect(sequence == lastSequence[key, default: -1] + 1, "per-key order for \(key)")
            lastSequence[key] = sequence
            #expect(message.header("ce_type") == bytes("test.v1"))
            #expect(message.headers.count == 3)
            #expect(message.headers.first { $0.key == "empty" }?.value == [])
            #expect(message.headers.first { $0.key == "none" }.map { $0.value == nil } == true)
            #expect(message.timestamp != nil)
        }
        #expect(lastSequence.count == 100 && lastSequence.values.allSatisfy { $0 == 7 })
        let tombstone = messages.first { $0.key == bytes("tombstone") }
        #expect(tombstone != nil && tombstone?.value == nil, "a nil value arrives as a tombstone")
        // Offsets reported by delivery reports are where the records are.
        let byPosition = Dictionary(
            uniqueKeysWithValues: messages.map {
                (TopicPartitionOffset(topic: $0.topic, partition: $0.partition, offset: $0.offset), $0)
            })
        for (record, landed) in zip(records, metadata) {
            let found = byPosition[
                TopicPartitionOffset(topic: landed.topic, partition: landed.partition, offset: landed.offset)]
            #expect(found?.value == record.value)
        }
        await cluster.close()
    }

    @Test("readPartitionToEnd returns the partition up to the high watermark at call time")
    func readToEnd() async throws {
        let cluster = try makeCluster(topics: ["state": 2])
        let empty = try await readPartitionToEnd(
            configuration: kafka(cluster), topic: "state", partition: 1, isolationLevel: .readCommitted,
            timeout: .seconds(20), logger: testLogger)
        #expect(empty.isEmpty)

        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka(cluster)), logger: testLogger)
        _ = try await producer.send(
            (0..<50).map {
                ProducerRecord(topic: "state", partition: 0, key: bytes("k\($0 % 7)"), value: bytes("\($0)"))
            })
        let read = try await readPartitionToEnd(
            configuration: kafka(cluster), topic: "state", partition: 0, isolationLevel: .readCommitted,
            timeout: .seconds(20), logger: testLogger)
        #expect(read.map { text($0.value) } == (0..<50).map { "\($0)" })
        #expect(read.map(\.offset) == Array(0..<50))
        await producer.close()
        await cluster.close()
    }

    @Test("a streamed read hands every record over in bounded batches, in offset order, and says where it ended")
    func streamedRead() async throws {
        let cluster = try makeCluster(topics: ["log": 2])
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka(cluster)), logger: testLogger)
        let value = [UInt8](repeating: 120, count: 1000)
        _ = try await producer.send(
            (0..<300).map { ProducerRecord(topic: "log", partition: Int32($0 % 2), key: bytes("k\($0)"), value: value) }
        )
        let batches = BatchLog()
        let (count, ends) = try await readPartitionsToEnd(
            configuration: kafka(cluster), topic: "log", partitions: { Array(0..<$0) }, isolationLevel: .readCommitted,
            timeout: .seconds(20), batchBytes: 16 << 10, logger: testLogger,
            onBatch: { batch in batches.batches.withLock { $0.append(batch) } })
        #expect(count == 2)
        #expect(ends == [0: 150, 1: 150])
        let all = batches.batches.withLock { $0 }
        // ~16 KB batches of ~1 KB records: many batches, none much larger than asked.
        #expect(all.count >= 15)
        #expect(all.allSatisfy { $0.count <= 17 })
        for partition: Int32 in [0, 1] {
            #expect(all.joined().filter { $0.partition == partition }.map(\.offset) == Array(0..<150))
        }
        await producer.close()
        await cluster.close()
    }

    @Test("readNewestPerKey keeps the newest record of each live key, not the log's history")
    func newestPerKey() async throws {
        let cluster = try makeCluster(topics: ["state": 1])
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka(cluster)), logger: testLogger)
        // 40 versions of each of 5 keys, then a tombstone for k3.
        _ = try await producer.send(
            (0..<200).map {
                ProducerRecord(topic: "state", partition: 0, key: bytes("k\($0 % 5)"), value: bytes("v\($0)"))
            })
        _ = try await producer.send([ProducerRecord(topic: "state", partition: 0, key: bytes("k3"), value: nil)])
        let (newest, end) = try await readNewestPerKey(
            configuration: kafka(cluster), topic: "state", partition: 0, isolationLevel: .readCommitted,
            timeout: .seconds(20), logger: testLogger)
        #expect(end == 201)
        #expect(newest.map { text($0.key) } == ["k0", "k1", "k2", "k4"])
        #expect(newest.map { text($0.value) } == ["v195", "v196", "v197", "v199"])
        await producer.close()
        await cluster.close()
    }

    @Test("admin lists topics with their partition counts; statistics are exposed")
    func adminAndStatistics() async throws {
        let cluster = try makeCluster(brokers: 3, topics: ["a": 3, "b": 12])
        let admin = try KafkaAdmin(configuration: kafka(cluster), logger: testLogger)
        let topics = try await admin.listTopics(timeout: .seconds(10))
        #expect(topics["a"] == 3)
        #expect(topics["b"] == 12)
        await admin.close()

        let statistics = Statistics()
        var configuration = ProducerConfiguration(kafka: kafka(cluster))
        configuration.kafka.statisticsInterval = .milliseconds(100)
        configuration.kafka.statisticsHandler = { json in statistics.set(json) }
        let producer = try KafkaProducer(configuration: configuration, logger: testLogger)
        _ = try await producer.send(ProducerRecord(topic: "a", key: nil, value: bytes("x")))
        try await eventually("statistics", timeout: .seconds(10)) {
            producer.latestStatistics?.contains("\"type\": \"producer\"") == true && statistics.value != nil
        }
        await producer.close()
        await cluster.close()
    }
}

/// Batches handed over by a streamed read.
final class BatchLog: Sendable {
    let batches = Synchronization.Mutex<[[ConsumerMessage]]>([])
}

final class Statistics: Sendable {
    private let latest = Synchronization.Mutex<String?>(nil)
    func set(_ json: String) { latest.withLock { $0 = json } }
    var value: String? { latest.withLock { $0 } }
}

import Synchronization
