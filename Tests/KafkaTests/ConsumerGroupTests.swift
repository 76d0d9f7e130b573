import ActivitySyncTesting
import Foundation
import Kafka
import Testing

@Suite("Consumer groups", .timeLimit(.minutes(2)))
struct ConsumerGroupTests {
    /// Runs a member's event loop: records events; on `.revoked` commits what it consumed and optionally
    /// holds the partitions for `holdOnRevoke` before asking for the next event.
    func runMember(
        _ consumer: KafkaConsumer, _ recorder: EventRecorder, holdOnRevoke: Duration = .zero
    ) -> Task<Void, Never> {
        Task {
            var processed: [TopicPartition: Int64] = [:]
            for await event in consumer.events {
                switch event {
                case .assigned(let partitions, _):
                    recorder.record(.assigned, partitions)
                case .revoked(let partitions):
                    recorder.record(.revoked, partitions)
                    let offsets = partitions.compactMap { partition in
                        processed[partition].map {
                            TopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: $0)
                        }
                    }
                    // The mock refuses commits once a rebalance started (REBALANCE_IN_PROGRESS); real Kafka
                    // accepts them here. Work is committed per batch below, so this is belt and braces.
                    try? await consumer.commit(offsets)
                    if holdOnRevoke > .zero { try? await Task.sleep(for: holdOnRevoke) }
                case .lost(let partitions):
                    recorder.record(.lost, partitions)
                case .fatal(let error):
                    Issue.record("consumer failed: \(error)")
                case .messages(let messages):
                    for message in messages {
                        processed[TopicPartition(topic: message.topic, partition: message.partition)] =
                            message.offset + 1
                    }
                    try? await consumer.commit(messages.map(\.nextOffset))
                    recorder.record(messages)
                }
            }
        }
    }

    @Test(
        "two members split the partitions, revocation comes before the partitions move, and one leaving hands all back")
    func splitAndRebalance() async throws {
        let cluster = try makeCluster(topics: ["jobs": 12])
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka(cluster)), logger: testLogger)
        _ = try await produceKeyed(producer, topic: "jobs", keys: 24, perKey: 5)
        let all = Set((0..<12).map { TopicPartition(topic: "jobs", partition: Int32($0)) })

        let first = try groupConsumer(cluster, group: "workers")
        let firstEvents = EventRecorder()
        try first.subscribe(topics: ["jobs"])
        let firstLoop = runMember(first, firstEvents, holdOnRevoke: .seconds(2))
        try await eventually("first member owns all partitions and read everything", timeout: .seconds(20)) {
            firstEvents.owned == all && firstEvents.messages.count == 120
        }

        let second = try groupConsumer(cluster, group: "workers")
        let secondEvents = EventRecorder()
        try second.subscribe(topics: ["jobs"])
        let secondLoop = runMember(second, secondEvents)
        try await eventually("partitions split between two members", timeout: .seconds(40)) {
            let a = firstEvents.owned
            let b = secondEvents.owned
            return !a.isEmpty && !b.isEmpty && a.isDisjoint(with: b) && a.union(b) == all
        }
        // The first member saw its partitions revoked, and held them for 2 s; the second got nothing before that.
        let revoked = try #require(firstEvents.entries.first { $0.kind == .revoked })
        let secondAssigned = try #require(secondEvents.entries.first { $0.kind == .assigned })
        #expect(secondAssigned.at > revoked.at + .seconds(2), "partitions moved only after the revoke was handled")
        #expect(Set(revoked.partitions) == all)
        // The second member starts where the first committed: every message is read exactly once overall.
        _ = try await produceKeyed(producer, topic: "jobs", keys: 24, perKey: 5, prefix: "second")
        try await eventually("all 240 messages consumed", timeout: .seconds(20)) {
            firstEvents.messages.count + secondEvents.messages.count >= 240
        }
        let positions = (firstEvents.messages + secondEvents.messages).map { "\($0.partition)@\($0.offset)" }
        #expect(positions.count == 240 && Set(positions).count == 240)
        #expect(secondEvents.messages.allSatisfy { text($0.value).hasPrefix("second") })
        #expect(!secondEvents.messages.isEmpty && firstEvents.messages.count > 120, "both members did work")

        // The second member leaves: the first gets every partition back.
        await second.close(timeout: .seconds(10))
        await secondLoop.value
        try await eventually("first member owns all partitions again", timeout: .seconds(40)) {
            firstEvents.owned == all
        }
        await first.close(timeout: .seconds(10))
        await firstLoop.value
        await producer.close()
        await cluster.close()
    }

    @Test("committed offsets survive a restart of the consumer")
    func committedOffsetsSurviveRestart() async throws {
        let cluster = try makeCluster(topics: ["jobs": 3])
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka(cluster)), logger: testLogger)
        _ = try await produceKeyed(producer, topic: "jobs", keys: 6, perKey: 10, prefix: "before")

        let consumer = try groupConsumer(cluster, group: "restart")
        try consumer.subscribe(topics: ["jobs"])
        let firstRun = await collectMessages(from: consumer) { $0.count >= 60 }
        #expect(firstRun.count == 60)
        var next: [TopicPartition: Int64] = [:]
        for message in firstRun {
            next[TopicPartition(topic: message.topic, partition: message.partition)] = message.offset + 1
        }
        try await consumer.commit(
            next.map { TopicPartitionOffset(topic: $0.key.topic, partition: $0.key.partition, offset: $0.value) })
        let committed = try await consumer.committed(Array(next.keys), timeout: .seconds(10))
        #expect(Set(committed.map(\.offset)) == Set(next.values))
        await consumer.close()

        _ = try await produceKeyed(producer, topic: "jobs", keys: 6, perKey: 5, prefix: "after")
        let restarted = try groupConsumer(cluster, group: "restart")
        try restarted.subscribe(topics: ["jobs"])
        let secondRun = await collectMessages(from: restarted, timeout: .seconds(20)) { $0.count >= 30 }
        #expect(secondRun.count == 30)
        #expect(secondRun.allSatisfy { text($0.value).hasPrefix("after") }, "nothing committed is read again")
        await restarted.close()
        await producer.close()
        await cluster.close()
    }

    @Test("pause, resume, seek and watermarks")
    func pauseSeekWatermarks() async throws {
        let cluster = try makeCluster(topics: ["t": 1])
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka(cluster)), logger: testLogger)
        _ = try await producer.send((0..<10).map { ProducerRecord(topic: "t", key: nil, value: bytes("\($0)")) })
        let consumer = try groupConsumer(cluster, group: "seek")
        try consumer.subscribe(topics: ["t"])
        let firstPass = await collectMessages(from: consumer) { $0.count >= 10 }
        #expect(firstPass.map(\.offset) == Array(0..<10))
        let marks = try await consumer.watermarks(topic: "t", partition: 0, timeout: .seconds(5))
        #expect(marks.low == 0 && marks.high == 10)
        #expect(try consumer.assignment() == [TopicPartition(topic: "t", partition: 0)])

        try await consumer.seek(TopicPartitionOffset(topic: "t", partition: 0, offset: 7), timeout: .seconds(5))
        let afterSeek = await collectMessages(from: consumer) { $0.count >= 3 }
        #expect(afterSeek.map(\.offset) == [7, 8, 9])

        try consumer.pause([TopicPartition(topic: "t", partition: 0)])
        _ = try await producer.send(ProducerRecord(topic: "t", key: nil, value: bytes("10")))
        let whilePaused = await collectMessages(from: consumer, timeout: .seconds(1)) { !$0.isEmpty }
        #expect(whilePaused.isEmpty)
        try consumer.resume([TopicPartition(topic: "t", partition: 0)])
        let afterResume = await collectMessages(from: consumer) { !$0.isEmpty }
        #expect(afterResume.map(\.offset) == [10])
        _ = try consumer.groupMetadata()
        await consumer.close()
        await producer.close()
        await cluster.close()
    }
}
