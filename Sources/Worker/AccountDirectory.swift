import Foundation
import Kafka
import Logging
import SyncModel
import Synchronization

/// The accounts of the jobs partitions this worker owns, read from the same partitions of the accounts topic: the
/// co-partitioned join that lets jobs carry no secret (same key, same murmur2 partitioner, same partition count,
/// checked at start).
///
/// **Fresh enough for each job.** A job runs only once its accounts partition was read up to a high watermark
/// taken after the job was produced (its record timestamp plus ``clockSkewAllowance``), so a change written
/// before the job — a reconnected account, a new token, a new integration — is always seen: a job whose account
/// changed since it was scheduled runs with the new config. Reads are coalesced: one catch-up at a time covers every
/// owned partition and every job waiting, through one long-lived client (``PartitionFollower``); an idle worker
/// reads nothing. A job waits for at most two catch-ups, parked, and stops waiting when its task is cancelled
/// (shutdown, revocation) — a catch-up against a gone cluster never holds a job past its deadline.
///
/// **Memory** is the owned partitions' live accounts (one ``AccountRecord`` each, ~0.5 KB with a token pair),
/// never the topic's history: a partition is loaded newest-per-key as it streams in, and a tombstone removes its
/// account.
final class AccountDirectory: Sendable {
    /// How much a producer's clock may run behind this worker's: a job is matched against the accounts read up to
    /// this long after its timestamp.
    static let clockSkewAllowance: Duration = .seconds(1)
    /// How often at most a reader stuck on stale partition leaders is replaced.
    static let followerReplacementInterval: Duration = .seconds(3)

    /// One account as its newest record left it.
    enum Entry: Sendable {
        /// `version` identifies the record's bytes (``AccountVersion``): a status the job writes names it.
        case account(AccountRecord, version: AccountVersion)
        /// The newest record of this key could not be decoded; jobs of the account are dead-lettered saying so.
        case unreadable(String)
    }

    /// One owned accounts partition.
    struct Table: Sendable {
        var entries: [String: Entry] = [:]
        /// The offset the next catch-up starts from.
        var next: Int64 = 0
        /// Every record written before this moment has been read.
        var fresh: Date
        /// Which assignment loaded it: a catch-up that started before a revocation must not touch the next one's.
        var epoch: UInt64 = 0

        init(fresh: Date) { self.fresh = fresh }

        /// Folds records in offset order: the newest per key wins, a tombstone removes the key.
        mutating func apply(_ messages: [ConsumerMessage]) {
            for message in messages {
                guard let keyBytes = message.key else { continue }
                let key = String(decoding: keyBytes, as: UTF8.self)
                guard let value = message.value, !value.isEmpty else {
                    entries[key] = nil
                    continue
                }
                do {
                    entries[key] = .account(
                        try AccountRecord.decodeMessage(value), version: AccountVersion(recordBytes: value))
                } catch {
                    entries[key] = .unreadable(
                        "its newest record on the accounts topic (offset \(message.offset)) is not an account record "
                            + "(\(type(of: error))); write it again with activity-sync accounts add")
                }
            }
        }
    }

    private struct Round: Sendable {
        var id: UInt64
        var startedAt: Date
        var task: Task<Void, Never>
        /// Lookups waiting for this round, resumed when it ends or when their task is cancelled.
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private struct State: Sendable {
        var tables: [Int32: Table] = [:]
        var round: Round?
        var nextId: UInt64 = 1
        var lastError: String?
        var nextEpoch: UInt64 = 1
        var follower: PartitionFollower?
        /// When a follower stuck on stale partition leaders was last replaced.
        var followerReplacedAt: ContinuousClock.Instant?
        var closed = false
    }

    private let configuration: KafkaConfiguration
    private let topic: String
    private let timeout: Duration
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameter timeout: how long one catch-up (or a partition's load) may take.
    init(configuration: KafkaConfiguration, topic: String, timeout: Duration, logger: Logger) {
        self.configuration = configuration
        self.topic = topic
        self.timeout = timeout
        self.logger = logger
    }

    // MARK: - Assignment

    /// Reads accounts partition `partition` from its start, keeping the newest record per key as it streams in.
    /// Install the result with ``install(_:partition:)`` once the partition's state is restored too.
    func load(partition: Int32, timeout: Duration, maxBufferedBytes: Int) async throws -> Table {
        let started = Date()
        let table = Mutex(Table(fresh: started))
        let end = try await readPartitionToEnd(
            configuration: configuration, topic: topic, partition: partition, isolationLevel: .readCommitted,
            timeout: timeout, maxBufferedBytes: maxBufferedBytes, batchBytes: 256 << 10, logger: logger,
            onBatch: { batch in table.withLock { $0.apply(batch) } })
        return table.withLock { table in
            table.next = end
            return table
        }
    }

    /// Makes `table` the partition's accounts (replacing what an earlier assignment left).
    func install(_ table: Table, partition: Int32) {
        state.withLock { state in
            var table = table
            table.epoch = state.nextEpoch
            state.nextEpoch += 1
            state.tables[partition] = table
        }
    }

    /// Forgets revoked or lost partitions.
    func drop(_ partitions: [Int32]) {
        state.withLock { state in
            for partition in partitions { state.tables[partition] = nil }
        }
    }

    var accountCount: Int { state.withLock { $0.tables.values.reduce(0) { $0 + $1.entries.count } } }

    // MARK: - Lookup

    /// The account's record as of at least the job's timestamp (see the type's documentation).
    func lookup(_ accountId: String, partition: Int32, producedAt: Date?) async -> AccountLookup {
        let now = Date()
        let needed = min(now, (producedAt ?? now).addingTimeInterval(Self.clockSkewAllowance.timeInterval))
        // A round in flight may have started before `needed`: wait for it, then for one of our own.
        for _ in 0..<3 {
            enum Step {
                case done(AccountLookup)
                case wait(round: UInt64)
            }
            let step: Step = state.withLock { state in
                guard let table = state.tables[partition] else {
                    return .done(.unavailable("accounts partition \(partition) is not owned by this worker any more"))
                }
                if table.fresh >= needed {
                    return .done(Self.find(accountId, in: table, partition: partition, topic: topic))
                }
                if let round = state.round { return .wait(round: round.id) }
                if state.closed { return .done(.unavailable("the worker is stopping")) }
                let startedAt = Date()
                let id = state.nextId
                state.nextId += 1
                let task = Task { await self.catchUp(startedAt: startedAt) }
                state.round = Round(id: id, startedAt: startedAt, task: task)
                return .wait(round: id)
            }
            switch step {
            case .done(let lookup): return lookup
            case .wait(let round): await wait(for: round)
            }
            if Task.isCancelled { return .unavailable("the job was cancelled while its account was being read") }
        }
        return state.withLock { state in
            guard let table = state.tables[partition], table.fresh >= needed else {
                return .unavailable(
                    "accounts partition \(partition) could not be read: \(state.lastError ?? "no catch-up finished")")
            }
            return Self.find(accountId, in: table, partition: partition, topic: topic)
        }
    }

    /// Parks the calling task until round `id` ends or the task is cancelled.
    private func wait(for id: UInt64) async {
        let waiter = state.withLock { state in
            defer { state.nextId += 1 }
            return state.nextId
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let parked = state.withLock { state -> Bool in
                    guard state.round?.id == id, !Task.isCancelled else { return false }
                    state.round?.waiters[waiter] = continuation
                    return true
                }
                if !parked { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.round?.waiters.removeValue(forKey: waiter) }?.resume()
        }
    }

    private static func find(_ accountId: String, in table: Table, partition: Int32, topic: String) -> AccountLookup {
        switch table.entries[accountId] {
        case .account(let record, let version)?: return .found(record, version: version)
        case .unreadable(let reason)?: return .unknown("account \(accountId.prefix(60)): \(reason)")
        case nil:
            return .unknown(
                "account \(accountId.prefix(60)) is not on \(topic) in partition \(partition), where murmur2 of its id "
                    + "puts it: it was never added, was removed, or was written by a producer with another "
                    + "partitioner (write it again with activity-sync accounts add)")
        }
    }

    /// One coalesced catch-up of every owned partition, as steps: read each partition to its end, then end the round
    /// (its waiters resumed) whether the read worked or not, so no lookup waits for a round that is over.
    private func catchUp(startedAt: Date) async {
        var error: String?
        do {
            try await readToEnd(startedAt: startedAt)
        } catch let failure {
            error = "\(failure)"
            // A client stuck on a partition leader a broker restart moved asks the old leader forever (librdkafka
            // 2.0.2 does not refresh it for a watermark query): the next catch-up starts a new client, at most every
            // few seconds.
            if failure.isStaleLeader { replaceStaleReader() }
            logger.warning(
                "reading the accounts topic failed; jobs waiting for it fail and run again with their next tick",
                metadata: ["topic": "\(topic)", "error": "\(failure)"])
        }
        let waiters = state.withLock { state in
            state.lastError = error
            defer { state.round = nil }
            return state.round?.waiters.values.map { $0 } ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Reads every owned partition from where its table stopped to its end, and marks the tables fresh as of
    /// `startedAt`. A partition revoked and assigned again meanwhile has a new epoch: what this round read of it is
    /// dropped, as its table was restored afresh.
    private func readToEnd(startedAt: Date) async throws(KafkaError) {
        let (from, epochs, follower) = state.withLock {
            state -> ([Int32: Int64], [Int32: UInt64], PartitionFollower?) in
            (state.tables.mapValues(\.next), state.tables.mapValues(\.epoch), state.follower)
        }
        let reader: PartitionFollower
        if let follower {
            reader = follower
        } else {
            reader = try PartitionFollower(
                configuration: configuration, topic: topic, isolationLevel: .readCommitted, logger: logger)
            state.withLock { $0.follower = reader }
        }
        let ends = try await reader.catchUp(from: from, timeout: timeout) { batch in
            let byPartition = Dictionary(grouping: batch, by: \.partition)
            self.state.withLock { state in
                for (partition, messages) in byPartition where state.tables[partition]?.epoch == epochs[partition] {
                    state.tables[partition]?.apply(messages)
                }
            }
        }
        state.withLock { state in
            for (partition, end) in ends where state.tables[partition]?.epoch == epochs[partition] {
                state.tables[partition]?.next = end
                state.tables[partition]?.fresh = startedAt
            }
        }
    }

    /// Drops the reading client so the next catch-up starts a new one, at most once per
    /// ``followerReplacementInterval``, so catch-ups failing in a row do not each open and close a client.
    private func replaceStaleReader() {
        let now = ContinuousClock.now
        let stale = state.withLock { state -> PartitionFollower? in
            guard let follower = state.follower,
                state.followerReplacedAt.map({ now - $0 >= Self.followerReplacementInterval }) ?? true
            else { return nil }
            state.follower = nil
            state.followerReplacedAt = now
            return follower
        }
        if let stale {
            logger.info("the accounts reader's partition leaders are stale; a new reader takes over")
            Task { await stale.close(timeout: .seconds(5)) }
        }
    }

    /// Stops a catch-up in flight and closes the reading client; later lookups of partitions not fresh enough
    /// answer `.unavailable`.
    func close() async {
        let (follower, round) = state.withLock { state in
            state.closed = true
            return (state.follower, state.round?.task)
        }
        round?.cancel()
        await round?.value
        await follower?.close()
    }
}
