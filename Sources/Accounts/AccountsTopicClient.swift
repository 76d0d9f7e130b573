import Foundation
import Synchronization
public import Kafka
public import Logging
public import SyncModel

/// Reads and writes the accounts topic: the `accounts` commands, `enqueue`, dev mode and tests.
///
/// The topic is compacted with key = accountId, so the last record per key is the account and a tombstone (a
/// record without value) removes it. Only sealed configs are written: sealing happens before this client sees a
/// record.
public struct AccountsTopicClient: Sendable {
    public var kafka: KafkaConfiguration
    public var topics: TopicNames
    public var timeout: Duration
    let logger: Logger

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
        /// The version of each account's record as stored (``AccountVersion``), which statuses name.
        public var versions: [String: AccountVersion] = [:]
    }

    /// Reads every partition of the accounts topic to its end, through one consumer.
    /// - Throws: ``AccountsError`` when the topic does not exist, `KafkaError` when it cannot be read.
    public func readAll() async throws -> Snapshot {
        try await read { count in Array(0..<count) }.snapshot
    }

    /// The accounts with these ids.
    ///
    /// Only the partitions the ids' keys land on under murmur2 (the partitioner our producers and Java's use) are
    /// read, so one account costs one partition, not the topic. An id not found there — written by a producer
    /// with another partitioner — is looked for in the other partitions before it is called unknown.
    /// - Returns: the accounts found (ids missing from `accounts` are not on the topic) and unreadable records of
    ///   the partitions read.
    public func read(accountIds: some Collection<String>) async throws -> Snapshot {
        let wanted = Set(accountIds)
        let first = try await read { count in
            Set(wanted.map { KeyPartitioner.murmur2(Array($0.utf8), partitionCount: count) }).sorted()
        }
        var snapshot = first.snapshot
        let missing = wanted.subtracting(snapshot.accounts.keys)
        if !missing.isEmpty, first.partitionsRead.count < Int(first.partitionCount) {
            let done = first.partitionsRead
            let rest = try await read { count in (0..<count).filter { !done.contains($0) } }.snapshot
            snapshot.accounts.merge(rest.accounts) { found, _ in found }
            snapshot.versions.merge(rest.versions) { found, _ in found }
            snapshot.invalid += rest.invalid
        }
        snapshot.accounts = snapshot.accounts.filter { wanted.contains($0.key) }
        snapshot.versions = snapshot.versions.filter { wanted.contains($0.key) }
        return snapshot
    }

    private func read(
        partitions: @escaping @Sendable (Int32) -> [Int32]
    ) async throws -> (snapshot: Snapshot, partitionCount: Int32, partitionsRead: Set<Int32>) {
        let chosen = Chosen()
        let (count, messages) = try await readPartitionsToEnd(
            configuration: kafka, topic: topics.accounts,
            partitions: { count in chosen.record(partitions(count)) }, isolationLevel: .readCommitted,
            timeout: timeout, logger: logger)
        guard count > 0 else { throw AccountsError.missingTopic(topics.accounts) }
        return (Self.snapshot(of: messages), count, chosen.partitions)
    }

    /// The partitions a read chose, kept for the fallback read.
    private final class Chosen: Sendable {
        private let stored = Mutex<Set<Int32>>([])
        func record(_ partitions: [Int32]) -> [Int32] {
            stored.withLock { $0 = Set(partitions) }
            return partitions
        }
        var partitions: Set<Int32> { stored.withLock { $0 } }
    }

    /// The last record per key wins; a tombstone removes the key.
    static func snapshot(of messages: [ConsumerMessage]) -> Snapshot {
        var latest: [String: Result<(AccountRecord, AccountVersion), RecordError>] = [:]
        var invalidWithoutKey: [(accountId: String?, reason: String)] = []
        for message in messages {
            let key = message.key.map { String(decoding: $0, as: UTF8.self) }
            guard let value = message.value else {
                if let key { latest[key] = nil }
                continue
            }
            do {
                let record = try AccountRecord.decodeMessage(value)
                latest[key ?? record.accountId] = .success((record, AccountVersion(recordBytes: value)))
            } catch {
                let reason = RecordError(description: "not an account record: \(error)")
                if let key {
                    latest[key] = .failure(reason)
                } else {
                    invalidWithoutKey.append((nil, reason.description))
                }
            }
        }
        var snapshot = Snapshot(accounts: [:], invalid: invalidWithoutKey)
        for (key, entry) in latest {
            switch entry {
            case .success(let (record, version)):
                snapshot.accounts[key] = record
                snapshot.versions[key] = version
            case .failure(let reason): snapshot.invalid.append((key, reason.description))
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

    /// Sends records through one idempotent producer, delivery awaited for all, then closes it.
    func send(_ records: [ProducerRecord]) async throws {
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
