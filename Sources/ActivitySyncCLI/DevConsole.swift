import Foundation
import Kafka
import Logging
import Synchronization
import SyncModel

/// The live view of `activity-sync dev`: every committed activity as it arrives, and a status line.
///
/// It reads as an ingestor would — `read_committed`, its own consumer group — so what it prints is what the
/// knowledge graph would receive. Jobs done are counted from state records (one per processed job), lag from
/// the workers' committed offsets against the jobs topic's high watermarks.
final class DevConsole: Sendable {
    struct Summary: Sendable {
        var activities = 0
        var distinctActivities = 0
        var jobs = 0
    }

    private let kafka: KafkaConfiguration
    private let topics: TopicNames
    private let partitions: Int32
    private let quiet: Bool
    private let logger: Logger
    private let counts = Mutex((activities: 0, jobs: 0, ids: Set<String>()))
    private let consumer: Mutex<KafkaConsumer?> = Mutex(nil)

    init(kafka: KafkaConfiguration, topics: TopicNames, partitions: Int32, quiet: Bool, logger: Logger) {
        self.kafka = kafka
        self.topics = topics
        self.partitions = partitions
        self.quiet = quiet
        self.logger = logger
    }

    var summary: Summary {
        counts.withLock { Summary(activities: $0.activities, distinctActivities: $0.ids.count, jobs: $0.jobs) }
    }

    func run(accounts: Int, quotaUsed: @escaping @Sendable () -> Int, children: ChildProcesses) async {
        do {
            let consumer = try KafkaConsumer(
                configuration: ConsumerConfiguration(
                    kafka: kafka, groupId: "activity-sync-dev-console-\(ProcessInfo.processInfo.processIdentifier)",
                    sessionTimeout: .seconds(6), heartbeatInterval: .milliseconds(500)),
                logger: logger)
            self.consumer.withLock { $0 = consumer }
            try consumer.subscribe(topics: [topics.activities, topics.state])
            let lagProbe = try KafkaConsumer(
                configuration: ConsumerConfiguration(kafka: kafka, groupId: "activity-sync-workers"), logger: logger)
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.consume(consumer) }
                group.addTask {
                    var reported = Set<String>()
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(2))
                        let lag = await self.lag(lagProbe)
                        let now = self.summary
                        print(
                            "· accounts \(accounts) · jobs done \(now.jobs) · activities \(now.activities) · "
                                + "jobs lag \(lag.map(String.init) ?? "?") · GitHub quota used \(quotaUsed())")
                        for child in children.exited() where child.status != 0 && !reported.contains(child.name) {
                            reported.insert(child.name)
                            print(
                                "! \(child.name) exited with status \(child.status); its log is in \(children.logDirectory.path)"
                            )
                        }
                        fflush(nil)
                    }
                }
                await group.next()
                group.cancelAll()
            }
            await lagProbe.close(timeout: .seconds(5))
        } catch {
            print("console: \(error)")
        }
    }

    private func consume(_ consumer: KafkaConsumer) async {
        for await event in consumer.events {
            if Task.isCancelled { return }
            guard case .messages(let messages) = event else { continue }
            for message in messages {
                guard let value = message.value else { continue }
                if message.topic == topics.state {
                    counts.withLock { $0.jobs += 1 }
                    continue
                }
                guard let envelope = try? WireFormat.decode(Envelope<Activity>.self, from: value) else { continue }
                let activity = envelope.data
                counts.withLock {
                    $0.activities += 1
                    $0.ids.insert(activity.id)
                }
                if !quiet {
                    print("\(WireFormat.formatDate(activity.occurredAt))  [\(activity.accountId)] \(activity.text)")
                }
            }
            fflush(nil)
        }
    }

    /// Jobs published but not yet committed by the workers' group.
    private func lag(_ probe: KafkaConsumer) async -> Int64? {
        let list = (0..<partitions).map { TopicPartition(topic: topics.jobs, partition: $0) }
        guard let committed = try? await probe.committed(list, timeout: .seconds(2)) else { return nil }
        var total: Int64 = 0
        for entry in committed {
            guard
                let marks = try? await probe.watermarks(
                    topic: entry.topic, partition: entry.partition, timeout: .seconds(2))
            else { return nil }
            total += marks.high - max(entry.offset, marks.low)
        }
        return total
    }

    func close() async {
        let consumer = self.consumer.withLock { $0 }
        await consumer?.close(timeout: .seconds(5))
    }
}
