import Foundation
public import Kafka
public import Logging
public import SyncModel

/// Reads and writes the accounts topic for the `accounts` and `enqueue` commands.
///
/// The topic is compacted with key = accountId, so the last record per key is the account and a tombstone (a
/// record without value) removes it. Only sealed configs are written: sealing happens before this client sees a
/// record.
public struct AccountsTopicClient: Sendable {
    public var kafka: KafkaConfiguration
    public var topics: TopicNames
    public var timeout: Duration
    private let logger: Logger

    public init(
        kafka: KafkaConfiguration, topics: TopicNames = .default, timeout: Duration = .seconds(30), logger: Logger
    ) {
        self.kafka = kafka
        self.topics = topics
        self.timeout = timeout
        self.logger = logger
    }

    /// The current accounts, and the records that could not be read (id or nil, reason).
    public struct Snapshot: Sendable {
        public var accounts: [String: AccountRecord]
        public var invalid: [(accountId: String?, reason: String)]
    }

    /// Reads every partition of the accounts topic to its end.
    public func readAll(validator: AccountValidator = AccountValidator(knownIntegrations: [])) async throws -> Snapshot
    {
        let admin = try KafkaAdmin(configuration: kafka, logger: logger)
        let partitionCount: Int
        do {
            let topicsFound = try await admin.listTopics(timeout: timeout)
            await admin.close(timeout: .seconds(5))
            guard let count = topicsFound[topics.accounts] else {
                throw SchedulerError.missingTopic(
                    "topic \(topics.accounts) does not exist; create the topics first (`activity-sync kafka "
                        + "create-topics`) or check --bootstrap")
            }
            partitionCount = count
        } catch {
            await admin.close(timeout: .seconds(5))
            throw error
        }
        var latest: [String: (record: AccountRecord?, reason: String?)] = [:]
        var invalidWithoutKey: [(accountId: String?, reason: String)] = []
        for partition in 0..<Int32(partitionCount) {
            let messages = try await readPartitionToEnd(
                configuration: kafka.forPartitionReads, topic: topics.accounts, partition: partition,
                isolationLevel: .readCommitted,
                timeout: timeout, logger: logger)
            for message in messages {
                let key = message.key.map { String(decoding: $0, as: UTF8.self) }
                guard let value = message.value else {
                    if let key { latest[key] = nil }
                    continue
                }
                do {
                    let record = try AccountRecord.decodeMessage(value)
                    latest[key ?? record.accountId] = (record, nil)
                } catch {
                    if let key {
                        latest[key] = (nil, "not an account record: \(error)")
                    } else {
                        invalidWithoutKey.append((nil, "not an account record: \(error)"))
                    }
                }
            }
        }
        var snapshot = Snapshot(accounts: [:], invalid: invalidWithoutKey)
        for (key, entry) in latest {
            if let record = entry.record {
                if validator.knownIntegrations.isEmpty, validator.sealer == nil {
                    snapshot.accounts[key] = record
                } else if case .invalid(_, let reason) = validator.validate(record, key: key) {
                    snapshot.invalid.append((key, reason))
                } else {
                    snapshot.accounts[key] = record
                }
            } else if let reason = entry.reason {
                snapshot.invalid.append((key, reason))
            }
        }
        return snapshot
    }

    /// Writes an account (already sealed).
    public func put(_ record: AccountRecord) async throws {
        try await put([record])
    }

    /// Writes accounts (already sealed) through one producer, delivery awaited for all.
    public func put(_ records: [AccountRecord]) async throws {
        try await send(
            records.map {
                ProducerRecord(topic: topics.accounts, key: Array($0.accountId.utf8), value: try $0.messageBytes())
            })
    }

    /// Writes a tombstone, which removes the account from every scheduler by its next tick.
    public func remove(accountId: String) async throws {
        try await send([ProducerRecord(topic: topics.accounts, key: Array(accountId.utf8), value: nil)])
    }

    /// Publishes a job to the jobs topic, keyed by account id like the scheduler's own jobs.
    public func enqueue(_ job: SyncJob) async throws {
        var encoder = JobEncoder()
        try await send([
            ProducerRecord(topic: topics.jobs, key: Array(job.accountId.utf8), value: try encoder.encode(job))
        ])
    }

    private func send(_ records: [ProducerRecord]) async throws {
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka, idempotent: true, messageTimeout: timeout),
            logger: logger)
        do {
            _ = try await producer.send(records)
        } catch {
            await producer.close(timeout: .seconds(5))
            throw error
        }
        await producer.close(timeout: .seconds(5))
    }
}

/// The Scheduler module's error: what went wrong and what to do.
public struct SchedulerError: Error, CustomStringConvertible, Sendable {
    private enum Code: Sendable {
        case missingTopic
        case unknownAccount
    }

    private let code: Code
    public let description: String

    private init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    static func missingTopic(_ description: String) -> SchedulerError { SchedulerError(.missingTopic, description) }

    /// The account is not on the accounts topic (never added, or removed).
    public static func unknownAccount(_ accountId: String, topic: String) -> SchedulerError {
        SchedulerError(
            .unknownAccount,
            "account \(accountId) is not on \(topic); add it with `activity-sync accounts add` or check the id "
                + "with `activity-sync accounts list`")
    }
}
