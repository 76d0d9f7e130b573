import ArgumentParser
import Foundation
import Kafka
import Logging
import Synchronization
import SyncModel

/// `activity-sync tail TOPIC`: a read_committed console consumer printing one JSON object per record.
struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print committed records of one of activity-sync's topics, one JSON object per line.")

    enum Topic: String, ExpressibleByArgument, CaseIterable {
        case activities, state, jobs, dlq, accounts, status, runs
    }

    @Argument(help: "activities, state, jobs, dlq, accounts, status or runs.")
    var topic: Topic

    @OptionGroup var options: CommonOptions

    @Flag(name: .customLong("from-beginning"), help: "Start at the oldest record instead of the newest.")
    var fromBeginning = false

    @Option(help: "Exit after this many records.")
    var max: Int?

    @Option(name: .customLong("idle-timeout"), help: "Exit after this many seconds without a new record.")
    var idleTimeout: Double?

    func validate() throws {
        if let idleTimeout, !(idleTimeout.isFinite && idleTimeout > 0 && idleTimeout <= 86_400) {
            throw ValidationError("--idle-timeout must be a number of seconds between 0 and 86400, such as 5")
        }
    }

    func run() async throws {
        let kafka = try options.kafka(clientId: "activity-sync-tail")
        let logger = options.bootstrapLogging("activity-sync.tail", defaultLevel: .warning)
        let names = options.topics
        let topicName: String =
            switch topic {
            case .activities: names.activities
            case .state: names.state
            case .jobs: names.jobs
            case .dlq: names.deadLetters
            case .accounts: names.accounts
            case .status: names.status
            case .runs: names.runs
            }
        // A throwaway group: nothing is committed, so tailing never moves anyone's position.
        let consumer = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: kafka,
                groupId: "activity-sync-tail-\(UUID().uuidString)", isolationLevel: .readCommitted,
                autoOffsetReset: fromBeginning ? .earliest : .latest, sessionTimeout: .seconds(6)),
            logger: logger)
        try consumer.subscribe(topics: [topicName])
        let progress = Progress()
        let limit = max
        let idle = idleTimeout
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in consumer.events {
                    guard case .messages(let messages) = event else { continue }
                    var out = ""
                    for message in messages {
                        out += TailCommand.line(for: message) + "\n"
                        if let limit,
                            progress.printed.withLock({
                                $0 += 1; return $0
                            }) >= limit
                        {
                            break
                        }
                    }
                    FileHandle.standardOutput.write(Data(out.utf8))
                    progress.lastActivity.withLock { $0 = ContinuousClock.now }
                    if let limit, progress.printed.withLock({ $0 }) >= limit { return }
                }
            }
            if let idle {
                group.addTask {
                    while true {
                        try await Task.sleep(for: .milliseconds(100))
                        if ContinuousClock.now - progress.lastActivity.withLock({ $0 })
                            >= .milliseconds(Int64(idle * 1000))
                        {
                            return
                        }
                    }
                }
            }
            try await group.next()
            group.cancelAll()
        }
        await consumer.close(timeout: .seconds(5))
    }

    static func line(for message: ConsumerMessage) -> String {
        var headers: [String: JSONValue] = [:]
        for header in message.headers {
            headers[header.key] = header.value.map { .string(String(decoding: $0, as: UTF8.self)) } ?? .null
        }
        let value: JSONValue
        if let bytes = message.value {
            value =
                (try? WireFormat.decode(JSONValue.self, from: bytes)) ?? .string(String(decoding: bytes, as: UTF8.self))
        } else {
            value = .null
        }
        let object: JSONValue = [
            "topic": .string(message.topic), "partition": .number(Double(message.partition)),
            "offset": .number(Double(message.offset)),
            "key": message.key.map { .string(String(decoding: $0, as: UTF8.self)) } ?? .null,
            "headers": .object(headers), "value": value,
        ]
        return (try? WireFormat.encode(object)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// What the printing task and the idle watcher share.
    private final class Progress: Sendable {
        let printed = Mutex(0)
        let lastActivity = Mutex(ContinuousClock.now)
    }
}
