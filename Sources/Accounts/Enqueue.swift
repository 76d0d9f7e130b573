import Cron
public import Foundation
import Kafka
public import SyncModel
import Synchronization

extension SyncJob {
    /// The job of `account`'s latest tick at or before `now`: the very job (same id) a scheduler fires for that
    /// tick, so a repeat — or a scheduler that also fired it — is recognised as the same job.
    ///
    /// An account whose schedule has no tick (an unparsable or impossible cron expression) gets a job of its own,
    /// scheduled at ``SyncJob/resyncTime(_:)`` of `now`.
    public init(latestTickOf account: AccountRecord, atOrBefore now: Date = Date()) {
        if let expression = try? CronExpression(account.settings.schedule.frequency),
            let tick = expression.latestSecond(atOrBefore: Int64(now.timeIntervalSince1970.rounded(.down)))
        {
            self.init(account: account, tick: Date(timeIntervalSince1970: TimeInterval(tick)))
        } else {
            self.init(
                accountId: account.accountId, integration: account.integration, scheduledAt: SyncJob.resyncTime(now))
        }
    }
}

extension AccountsTopicClient {
    /// Which accounts to publish jobs for.
    public enum Selection: Sendable, Hashable {
        /// Every enabled account on the topic (disabled, paused and needs_reauth ones are skipped, as the scheduler
        /// skips them).
        case all
        /// These accounts, enabled, paused or waiting for re-authentication alike (the worker skips a paused one's
        /// job and answers a rejected token's without asking GitHub); only the partitions holding them are read.
        case accounts([String])
    }

    /// What ``enqueue(_:now:)`` did.
    public struct EnqueueResult: Sendable {
        /// The jobs published, one per account found.
        public var jobs: [SyncJob]
        /// Requested ids that are not on the accounts topic (never added, or removed); nothing was published for them.
        public var unknownAccountIds: [String]
        /// With `.all`: accounts skipped because their status is `needs_reauth` for their current record (a
        /// scheduler fires nothing for them either, until they are reconnected or resumed).
        public var heldForReauth: [String] = []
    }

    /// Publishes the job of each selected account's latest tick, as a scheduler would, with one producer.
    ///
    /// The accounts topic is read once (`.all`), or only the partitions of the given ids, and every job goes out
    /// in one batch. Known accounts are published even when some ids are unknown.
    /// - Throws: ``AccountsError`` when the accounts topic does not exist; `KafkaError` when it cannot be read or a
    ///   job is not delivered.
    public func enqueue(_ selection: Selection, now: Date = Date()) async throws -> EnqueueResult {
        let accounts: [AccountRecord]
        var unknown: [String] = []
        var held: [String] = []
        switch selection {
        case .all:
            let snapshot = try await readAll()
            let judged = try await reauthVersions()
            let active = snapshot.accounts.values.filter(\.settings.isActive)
            held = active.filter { account in
                judged[account.accountId].map { $0 == snapshot.versions[account.accountId] } ?? false
            }.map(\.accountId).sorted()
            let skipped = Set(held)
            accounts = active.filter { !skipped.contains($0.accountId) }.sorted { $0.accountId < $1.accountId }
        case .accounts(let ids):
            let found = try await read(accountIds: ids).accounts
            var seen = Set<String>()
            let distinct = ids.filter { seen.insert($0).inserted }
            accounts = distinct.compactMap { found[$0] }
            unknown = distinct.filter { found[$0] == nil }
        }
        let jobs = accounts.map { SyncJob(latestTickOf: $0, atOrBefore: now) }
        try await publish(jobs)
        return EnqueueResult(jobs: jobs, unknownAccountIds: unknown, heldForReauth: held)
    }

    /// Per account whose newest status is `needs_reauth` with a record version, that version; read from the whole
    /// status topic, keeping nothing of other statuses. A missing status topic holds nothing back.
    func reauthVersions() async throws -> [String: AccountVersion] {
        let judged = Mutex<[String: AccountVersion]>([:])
        _ = try await readPartitionsToEnd(
            configuration: kafka, topic: topics.status, partitions: { Array(0..<$0) }, isolationLevel: .readCommitted,
            timeout: timeout, logger: logger,
            onBatch: { batch in
                judged.withLock { judged in
                    for message in batch {
                        guard let key = message.key else { continue }
                        let accountId = String(decoding: key, as: UTF8.self)
                        let status = message.value.flatMap {
                            try? WireFormat.decode(Envelope<AccountStatus>.self, from: $0).data
                        }
                        judged[accountId] = status.flatMap { status in
                            status.status == .needsReauth ? status.accountVersion.flatMap(AccountVersion.init) : nil
                        }
                    }
                }
            })
        return judged.withLock { $0 }
    }

    /// ``enqueue(_:now:)``, then waits up to `timeout` for each published job's run record.
    /// - Returns: what was published, and the run record of each job that got one in time (by job id).
    public func enqueue(_ selection: Selection, now: Date = Date(), waitingUpTo timeout: Duration) async throws
        -> (published: EnqueueResult, runs: [String: RunRecord])
    {
        let waiter = try await RunWaiter.start(kafka: kafka, topics: topics, logger: logger)
        let published: EnqueueResult
        do {
            published = try await enqueue(selection, now: now)
        } catch {
            await waiter.close()
            throw error
        }
        return (published, try await waiter.wait(for: published.jobs, timeout: timeout))
    }

    /// Publishes a one-off job re-reading `accountId` from `since`; its activities keep their stable ids.
    /// - Throws: ``AccountsError`` when the account is not on the topic.
    public func resync(accountId: String, since: Date, now: Date = Date()) async throws -> SyncJob {
        guard let account = try await read(accountIds: [accountId]).accounts[accountId] else {
            throw AccountsError.unknownAccounts([accountId], topic: topics.accounts)
        }
        let job = SyncJob(resyncing: account, since: since, now: now)
        try await publish([job])
        return job
    }

    /// Publishes jobs to the jobs topic, keyed by account id like the scheduler's own, through one producer.
    public func publish(_ jobs: [SyncJob]) async throws {
        guard !jobs.isEmpty else { return }
        var encoder = JobEncoder()
        try await send(
            jobs.map {
                ProducerRecord(topic: topics.jobs, key: Array($0.accountId.utf8), value: try encoder.encode($0))
            }
        )
    }
}
