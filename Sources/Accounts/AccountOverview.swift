import Cron
public import Foundation
import Kafka
public import SyncModel
import Synchronization

/// One account as an operator asks about it (`accounts show`): its record (never its token), next ticks, status,
/// state summary and last runs — read from the topics, no sealing key needed.
public struct AccountOverview: Sendable {
    public var account: AccountRecord
    /// The version of the account's record as stored, which a status names (``AccountStatus/accountVersion``).
    public var version: AccountVersion?
    /// The schedule's next ticks after now; empty when the expression has none (or does not parse).
    public var nextTicks: [Date]
    public var status: AccountStatus?
    /// The newest state record: `lastJob` says which tick last committed.
    public var state: StateRecord?
    /// The newest run records of the account, oldest first.
    public var runs: [RunRecord]

    /// Whether schedulers fire no job for the account because its status is `needs_reauth` for this very record:
    /// until the record changes (a reconnect, `accounts resume`).
    public var isHeldForReauth: Bool { status?.holdsJobs(ofRecord: version) ?? false }
}

extension AccountsTopicClient {
    /// The account's overview, or nil when it is not on the accounts topic.
    ///
    /// Reads one partition of each topic — the one murmur2 of the id gives — and keeps only this account's newest
    /// records as they stream by (the last `runs` run records), so memory is that, whatever the topics hold.
    /// - Throws: ``AccountsError`` when the accounts topic does not exist; `KafkaError` when a topic cannot be read.
    public func overview(of accountId: String, runs: Int = 10, now: Date = Date()) async throws -> AccountOverview? {
        let snapshot = try await read(accountIds: [accountId])
        guard let account = snapshot.accounts[accountId] else { return nil }
        let key = Array(accountId.utf8)
        let counts = try await KafkaAdmin.listTopics(configuration: kafka, timeout: timeout, logger: logger)
        func partition(on topic: String) -> Int32? {
            counts[topic].flatMap { $0 > 0 ? KeyPartitioner.murmur2(key, partitionCount: Int32($0)) : nil }
        }
        let status = try await newest(on: topics.status, partition: partition(on: topics.status), key: key).flatMap {
            try? WireFormat.decode(Envelope<AccountStatus>.self, from: $0).data
        }
        let state = try await newest(on: topics.state, partition: partition(on: topics.state), key: key).flatMap {
            try? WireFormat.decode(StateRecord.self, from: $0)
        }
        let kept = Mutex<[RunRecord]>([])
        let limit = max(0, runs)
        if limit > 0, let partition = partition(on: topics.runs) {
            _ = try await readPartitionToEnd(
                configuration: kafka, topic: topics.runs, partition: partition, isolationLevel: .readCommitted,
                timeout: timeout, maxBufferedBytes: 4 << 20, logger: logger
            ) { batch in
                let mine = batch.filter { $0.key == key }.compactMap {
                    $0.value.flatMap { try? RunRecord.decodeMessage($0) }
                }
                guard !mine.isEmpty else { return }
                kept.withLock { runs in
                    runs.append(contentsOf: mine)
                    if runs.count > limit { runs.removeFirst(runs.count - limit) }
                }
            }
        }
        var ticks: [Date] = []
        if let expression = try? CronExpression(account.settings.schedule.frequency) {
            var after = now
            while ticks.count < 3, let next = expression.next(after: after) {
                ticks.append(next)
                after = next
            }
        }
        return AccountOverview(
            account: account, version: snapshot.versions[accountId], nextTicks: ticks, status: status, state: state,
            runs: kept.withLock { $0 })
    }

    /// The value of the newest record with `key` in the partition murmur2 gives it on `topic` (nil when there is
    /// none, or the newest is a tombstone).
    private func newest(on topic: String, partition: Int32?, key: [UInt8]) async throws -> [UInt8]? {
        guard let partition else { return nil }
        let newest = Mutex<[UInt8]?>(nil)
        _ = try await readPartitionToEnd(
            configuration: kafka, topic: topic, partition: partition, isolationLevel: .readCommitted,
            timeout: timeout, maxBufferedBytes: 4 << 20, logger: logger
        ) { batch in
            for message in batch where message.key == key { newest.withLock { $0 = message.value } }
        }
        return newest.withLock { $0 }
    }
}
