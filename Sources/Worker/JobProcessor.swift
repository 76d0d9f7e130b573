import Crypto
import Foundation
import IntegrationCatalog
import Logging
import Metrics
import Sealing
import SyncModel
import Synchronization

/// A record the worker will write, independent of the Kafka binding so the deciding code stays I/O-free.
struct OutgoingRecord: Sendable, Hashable {
    struct Header: Sendable, Hashable {
        var key: String
        var value: [UInt8]

        init(_ key: String, _ value: String) {
            self.key = key
            self.value = Array(value.utf8)
        }
    }

    var topic: String
    /// Set for state records: they must land in the jobs partition's twin, whatever the partitioner does.
    var partition: Int32?
    var key: [UInt8]?
    var value: [UInt8]?
    var headers: [Header]

    init(topic: String, partition: Int32? = nil, key: String?, value: [UInt8]?, headers: [(String, String)] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key.map { Array($0.utf8) }
        self.value = value
        self.headers = headers.map { Header($0.0, $0.1) }
    }

    /// What this record counts against a size limit such as `message.max.bytes`: key, value and headers, plus
    /// ``overheadAllowance`` for the record's framing (lengths, timestamp, attributes) and its batch's header.
    var estimatedSize: Int {
        (key?.count ?? 0) + (value?.count ?? 0) + headers.reduce(0) { $0 + $1.key.utf8.count + $1.value.count }
            + Self.overheadAllowance
    }

    /// Generous: a record's own framing is at most a few varints per header and field, a batch header 61 bytes.
    static let overheadAllowance = 512
}

/// Where a job came from on the jobs topic.
struct JobOrigin: Sendable, Hashable {
    var topic: String
    var partition: Int32
    var offset: Int64
    var key: [UInt8]?
    var value: [UInt8]?
    /// The record's timestamp: the account's record must be read at least up to it before the job runs.
    var timestamp: Date?

    init(topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?, timestamp: Date? = nil) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp
    }
}

/// What one job produced: the records to write and how it went.
struct JobResult: Sendable {
    enum Outcome: String, Sendable, CaseIterable {
        case synced
        /// Stopped early (deadline, rate limit); progress saved, the rest comes with a later job.
        case partial
        case duplicate
        case deadLettered = "dead_lettered"
        case needsReauth = "needs_reauth"
        /// The integration failed transiently on every attempt; nothing written, the next tick retries.
        case failed
        /// Not run: a newer job of the account was waiting behind it and ran instead.
        case coalesced
        /// Not run: the account is paused (`accounts pause`).
        case paused
        /// Not run: the account's syncs keep failing, and its backoff (or auto-pause) holds this tick back.
        case backingOff = "backing_off"
    }

    var outcome: Outcome
    /// Activities, dead letters and status records: written first.
    var records: [OutgoingRecord] = []
    /// The new state record: written after the activities it accounts for.
    var stateRecords: [OutgoingRecord] = []
    /// The new state, for the in-memory store.
    var newState: StateRecord?
    /// The account status this job observed, written only when it changed.
    var status: AccountStatus?
    var activityCount = 0
    var poison: Poison?
    /// Why the job was not run (a paused account), for its run record.
    var reason: String?
    /// The job's `scheduledAt`, for scheduled→committed latency; nil for poison.
    var scheduledAt: Date?

    init(outcome: Outcome) { self.outcome = outcome }
}

/// Runs one job against its integration and turns the outcome into records. No Kafka here.
///
/// Every record it returns fits in ``maxRecordBytes``: a dead letter keeps a prefix of an oversized job, an
/// activity a prefix of an oversized text, and a state record that cannot fit turns the job into a dead letter.
/// A record that cannot be produced at all is logged and counted (`activity_sync_worker_dropped_records_total`),
/// never dropped silently.
struct JobProcessor: Sendable {
    var integrations: IntegrationRegistry
    var sealer: any ConfigSealer
    var topics: TopicNames
    var workerId: String
    /// How long a sync may take before it must return with its progress.
    var syncTimeout: Duration = .seconds(60)
    /// Attempts for an integration that throws a transient error.
    var maxAttempts = 3
    /// An account whose syncs fail in a row waits this long after its first failure before the next attempt,
    /// doubling with each failure up to ``maxFailureBackoff`` (±20 %, fixed per account, so accounts that fail
    /// together do not come back together). Ticks in between are skipped (run record `skipped`).
    var failureBackoff: Duration = .seconds(60)
    var maxFailureBackoff: Duration = .seconds(6 * 3600)
    /// An account failing for this long is paused (`auto_paused`): no attempt until its record changes
    /// (reconnected, or `accounts resume`).
    var autoPauseAfter: Duration = .seconds(7 * 86_400)
    var retryDelay: Duration = .milliseconds(500)
    /// The largest record this processor returns (``OutgoingRecord/estimatedSize``); see
    /// ``WorkerConfiguration/maxRecordBytes``.
    var maxRecordBytes = 1_000_000
    /// Told about records that had to be shortened or could not be written. Never given tokens or configs.
    var logger = Logger(label: "activity-sync.worker.jobs")
    /// Where `activity_sync_worker_dropped_records_total` and `…_truncated_records_total` are counted; nil (the
    /// default) means the factory the process bootstrapped, looked up when counting.
    var metricsFactory: (any MetricsFactory)?

    /// Reasons longer than this (in UTF-8 bytes) are cut: they go into a header and a record as they are.
    static let maxReasonBytes = 1_000
    /// Keys longer than this are cut in dead letters; a real key is an account id of a few bytes.
    static let maxDeadLetterKeyBytes = 1_024

    init(integrations: IntegrationRegistry, sealer: any ConfigSealer, topics: TopicNames, workerId: String) {
        self.integrations = integrations
        self.sealer = sealer
        self.topics = topics
        self.workerId = workerId
    }

    /// The last 24 base64 characters of a sealed config: its 16-byte GCM tag, unique per sealing.
    static func configTag(_ sealed: SealedConfig) -> String { String(sealed.ciphertext.suffix(24)) }

    /// The job as a dead letter: one record on the dead-letter topic that always fits in ``maxRecordBytes``.
    ///
    /// The record keeps the whole original value when it fits, else its first bytes; either way
    /// `dlq_original_size` and `dlq_original_sha256` describe the whole value and `dlq_truncated` says which.
    func deadLetter(_ poison: Poison, origin: JobOrigin, now: Date = Date()) -> JobResult {
        var result = JobResult(outcome: .deadLettered)
        result.poison = poison
        result.records = [deadLetterRecord(poison, origin: origin, now: now)]
        return result
    }

    private func deadLetterRecord(_ poison: Poison, origin: JobOrigin, now: Date) -> OutgoingRecord {
        let value = origin.value ?? []
        let digest = SHA256.hash(data: value).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
        let key = origin.key.map { String(decoding: $0.prefix(Self.maxDeadLetterKeyBytes), as: UTF8.self) }
        let reason = Self.bounded(poison.reason, maxBytes: Self.maxReasonBytes)
        func record(keeping count: Int) -> OutgoingRecord {
            let letter = DeadLetter(
                reason: reason, code: poison.kind.rawValue, originalTopic: origin.topic,
                originalPartition: Int(origin.partition), originalOffset: origin.offset, originalKey: key,
                originalValuePrefix: value.prefix(count), originalSize: value.count, originalSHA256: digest,
                failedAt: now, workerId: workerId)
            let bytes: [UInt8]
            do {
                bytes = try letter.messageBytes()
            } catch {
                // Strings, integers and a date cannot fail to encode; should they, the headers still say it all.
                logger.error(
                    "could not encode a dead letter; writing its headers with an empty value",
                    metadata: ["code": "\(poison.kind.rawValue)", "error": "\(type(of: error))"])
                WorkerMetrics.dropped(.deadLetter, factory: metricsFactory)
                bytes = []
            }
            return OutgoingRecord(topic: topics.deadLetters, key: key, value: bytes, headers: letter.headers)
        }
        // Start from what could fit at best (base64 alone would use the whole limit), not from the whole value.
        var kept = min(value.count, max(0, maxRecordBytes / 4 * 3))
        var candidate = record(keeping: kept)
        // Base64 makes the value's share linear (4 characters per 3 bytes), so one correction nearly always
        // suffices; the loop absorbs the few bytes the truncation flag itself adds.
        while candidate.estimatedSize > maxRecordBytes, kept > 0 {
            let excess = candidate.estimatedSize - maxRecordBytes
            kept = max(0, min(kept, value.count) / 3 * 3 - (excess + 3) / 4 * 3 - 3)
            candidate = record(keeping: kept)
        }
        if kept < value.count {
            WorkerMetrics.truncated(.deadLetter, factory: metricsFactory)
            logger.warning(
                "dead letter keeps only a prefix of the job's value: the whole would exceed maxRecordBytes",
                metadata: [
                    "code": "\(poison.kind.rawValue)", "partition": "\(origin.partition)",
                    "offset": "\(origin.offset)", "originalSize": "\(value.count)", "keptBytes": "\(kept)",
                ])
        }
        if candidate.estimatedSize > maxRecordBytes {
            // Only a maxRecordBytes of a few kilobytes gets here: the letter is written and may be refused.
            logger.error(
                "a dead letter without its value still exceeds maxRecordBytes; raise the limit",
                metadata: ["size": "\(candidate.estimatedSize)", "maxRecordBytes": "\(maxRecordBytes)"])
        }
        return candidate
    }

    /// Stores a refreshed token pair (sealed, tagged with the account config it refreshed) before the sync uses it.
    typealias SaveCredentials = @Sendable (CredentialState) async throws -> Void

    /// Runs `job` given the account's record (from the accounts topic) and current state.
    /// - Parameter saveCredentials: stores a pair the sync refreshed before the sync uses it; nil keeps it only in
    ///   the job's output.
    func process(
        _ job: SyncJob, origin: JobOrigin, account: AccountLookup, state: StateRecord?,
        saveCredentials: SaveCredentials? = nil, now: Date = Date()
    ) async -> JobResult {
        var result = await run(
            job, origin: origin, account: account, state: state, saveCredentials: saveCredentials, now: now)
        if result.outcome != .deadLettered { result.scheduledAt = job.scheduledAt }
        // The status says which record it was judged on: a scheduler holds back a needs_reauth account's jobs
        // until that record is replaced (the worker never rewrites the record itself: it would race a reconnect).
        if case .found(_, let version?) = account, result.status != nil {
            result.status?.accountVersion = version.description
        }
        return result
    }

    /// What a step of a job either hands to the next step, or the job's result when the job ends there.
    enum Step<Value> {
        case proceed(Value)
        case finish(JobResult)
    }

    /// The job from its first check to its records, as a list of steps: a step that ends the job returns its result.
    private func run(
        _ job: SyncJob, origin: JobOrigin, account lookup: AccountLookup, state: StateRecord?,
        saveCredentials: SaveCredentials?, now: Date
    ) async -> JobResult {
        if DuplicateFire.isDuplicate(job, lastJob: state?.lastJob) {
            return JobResult(outcome: .duplicate)
        }
        let account: AccountRecord
        let integration: any Integration
        switch admit(job, origin: origin, account: lookup, now: now) {
        case .proceed(let admitted): (account, integration) = admitted
        case .finish(let result): return result
        }
        // A streak counts only while the account's record is the one it failed with: reconnecting or resuming the
        // account starts afresh.
        let streak = state?.failures.flatMap { account.updatedAt > $0.last ? nil : $0 }
        let tag = Self.configTag(account.sealedConfig)
        let credentials = state?.credentials.flatMap { $0.accountConfigTag == tag ? $0 : nil }
        if let withheld = withheld(job, streak: streak, credentials: credentials, now: now) { return withheld }
        let config: JSONValue
        switch openConfig(account.sealedConfig, refreshed: credentials?.refreshed, accountId: job.accountId) {
        case .failure(let poison): return deadLetter(poison, origin: origin, now: now)
        case .success(let opened): config = opened
        }
        let deadline = now.addingTimeInterval(syncTimeout.timeInterval)
        var request = SyncRequest(
            accountId: job.accountId, config: config, state: state?.data, since: job.since, deadline: deadline,
            scheduledAt: job.scheduledAt)
        // A pair stored mid-sync is part of the account's state from then on, whatever becomes of the sync.
        let stored = Mutex<CredentialState?>(nil)
        if let saveCredentials {
            let sealer = self.sealer
            let rejected = credentials?.rejected ?? false
            request.saveRefreshedConfig = { refreshed in
                let pair = CredentialState(
                    accountConfigTag: tag, refreshed: try sealer.seal(refreshed), rejected: rejected)
                try await saveCredentials(pair)
                stored.withLock { $0 = pair }
            }
        }
        switch await sync(request, with: integration, deadline: deadline) {
        case .synced(let outcome):
            return records(
                for: outcome, job: job, origin: origin, state: state, tag: tag, credentials: credentials, now: now)
        case .rejected(let poison):
            return deadLetter(poison, origin: origin, now: now)
        case .gaveUp(let lastError):
            return failedSync(
                lastError: lastError, streak: streak, stored: stored, job: job, origin: origin, state: state, now: now)
        }
    }

    /// Whether the job may run at all, and with which account record and integration. A job that names an account
    /// or integration this worker does not have is the job's fault (a dead letter); an account record that cannot be
    /// read in time is not (the job fails and its next tick runs it); a paused account's jobs are skipped.
    private func admit(
        _ job: SyncJob, origin: JobOrigin, account lookup: AccountLookup, now: Date
    ) -> Step<(AccountRecord, any Integration)> {
        let account: AccountRecord
        switch lookup {
        case .found(let record, _): account = record
        case .unknown(let reason): return .finish(deadLetter(Poison(.unknownAccount, reason), origin: origin, now: now))
        case .unavailable(let reason):
            // The accounts topic could not be read in time: not the job's fault. Nothing is written but the status;
            // the account's next tick runs it again.
            var result = JobResult(outcome: .failed)
            result.status = AccountStatus(
                accountId: job.accountId, integration: job.integration, status: .failing,
                reason: "the account's record could not be read: \(reason.prefix(200))", at: now)
            return .finish(result)
        }
        if let pause = account.settings.paused {
            var result = JobResult(outcome: .paused)
            result.reason =
                "paused: the account was paused (\(pause.reason.rawValue)) at \(WireFormat.formatDate(pause.at))"
                + (pause.note.map { ": \($0)" } ?? "") + "; activity-sync accounts resume \(job.accountId) ends it"
            return .finish(result)
        }
        guard account.integration == job.integration else {
            return .finish(
                deadLetter(
                    Poison(
                        .integrationMismatch,
                        "the job names integration \"\(job.integration.prefix(40))\" but account "
                            + "\(job.accountId.prefix(60)) is a \"\(account.integration.prefix(40))\" account on the "
                            + "accounts topic"),
                    origin: origin, now: now))
        }
        guard let integration = integrations[job.integration] else {
            return .finish(
                deadLetter(
                    Poison(.unknownIntegration, "integration \"\(job.integration)\" is not loaded"), origin: origin,
                    now: now))
        }
        return .proceed((account, integration))
    }

    /// The result of a job its account's history says not to run now, or nil when it may run: a failing account
    /// backs off (an operator's one-off re-read, `accounts resync`, is not held back), so a broken account does not
    /// burn requests on every tick; a rejected token stays rejected until the account is reconnected.
    private func withheld(
        _ job: SyncJob, streak: FailureStreak?, credentials: CredentialState?, now: Date
    ) -> JobResult? {
        if job.since == nil, let streak, let reason = holdBack(streak, accountId: job.accountId, now: now) {
            var result = JobResult(outcome: .backingOff)
            result.reason = reason
            return result
        }
        if credentials?.rejected == true {
            // The token was rejected and the account was not reconnected since: asking again only burns requests.
            var result = JobResult(outcome: .needsReauth)
            result.status = AccountStatus(
                accountId: job.accountId, integration: job.integration, status: .needsReauth,
                reason: "the token was rejected; reconnect the account", at: now)
            return result
        }
        return nil
    }

    /// The account's config, opened: the token pair a sync refreshed replaces the one in the account record, which
    /// no longer works. A record that cannot be opened is a poison (the pair stays what the record says when only
    /// the refreshed one cannot be opened).
    private func openConfig(_ sealed: SealedConfig, refreshed: SealedConfig?, accountId: String) -> Result<
        JSONValue, Poison
    > {
        let config: JSONValue
        switch sealer.openConfig(sealed) {
        case .failure(let poison): return .failure(poison)
        case .success(let opened): config = opened
        }
        guard let refreshed else { return .success(config) }
        switch sealer.openConfig(refreshed) {
        case .success(let opened): return .success(opened)
        case .failure(let poison):
            // Its key was retired before the account was reconnected: the record's pair may still work, and if it
            // does not, the sync says so (needs_reauth). Said here, since nothing else would show why.
            logger.warning(
                "the refreshed token pair stored for the account cannot be opened; the account record's is used",
                metadata: ["accountId": "\(accountId)", "reason": "\(poison.description)"])
            return .success(config)
        }
    }

    /// What the integration's attempts at a sync came to.
    private enum Attempts {
        case synced(SyncOutcome)
        /// The integration said the job can never succeed: a dead letter.
        case rejected(Poison)
        /// Every attempt failed transiently, or the job was cancelled.
        case gaveUp(lastError: String)
    }

    /// Runs the sync, again after a transient error: up to ``maxAttempts`` times, waiting from ``retryDelay`` on
    /// (doubling, at most 8×) but never past the sync's deadline, and not at all once the job is cancelled, so a
    /// revocation or shutdown is not held up by retries.
    private func sync(_ request: SyncRequest, with integration: any Integration, deadline: Date) async -> Attempts {
        var lastError = ""
        for attempt in 1...max(1, maxAttempts) {
            do {
                return .synced(try await integration.sync(request))
            } catch let error as IntegrationError {
                switch error.kind {
                case .permanent: return .rejected(Poison(.permanentFailure, error.message))
                case .invalidConfig: return .rejected(Poison(.invalidConfig, error.message))
                case .transient: lastError = error.message
                }
            } catch is CancellationError {
                lastError = "cancelled"
                break
            } catch {
                lastError = "\(type(of: error))"
            }
            let wait = Backoff(initial: retryDelay, maximum: retryDelay * 8).delay(afterFailures: attempt)
            if attempt < maxAttempts, Date().addingTimeInterval(wait.timeInterval) < deadline {
                try? await Task.sleep(for: wait)
                if Task.isCancelled { break }
            }
        }
        return .gaveUp(lastError: lastError)
    }

    /// A sync that did not succeed. Cancelled (a revocation's deadline, a lost partition, shutdown): not the
    /// account's fault, so nothing is written and the job runs again from the committed offset. Failed: the account
    /// is marked failing and its streak goes into the state record (the state otherwise as it was, with a pair the
    /// sync stored), so the next ticks back off and a week of failures pauses the account.
    private func failedSync(
        lastError: String, streak: FailureStreak?, stored: borrowing Mutex<CredentialState?>, job: SyncJob,
        origin: JobOrigin, state: StateRecord?, now: Date
    ) -> JobResult {
        if Task.isCancelled { return JobResult(outcome: .failed) }
        var result = JobResult(outcome: .failed)
        let failures = FailureStreak(count: (streak?.count ?? 0) + 1, since: streak?.since ?? now, last: now)
        let next = now.addingTimeInterval(backoff(failures.count, accountId: job.accountId).timeInterval)
        result.status = AccountStatus(
            accountId: job.accountId, integration: job.integration, status: .failing,
            reason: "sync failed: \(lastError.prefix(200)) (\(failures.count) in a row since "
                + "\(WireFormat.formatDate(failures.since)); next attempt after \(WireFormat.formatDate(next)))",
            at: now)
        var kept = Self.kept(state, job: job, now: now)
        kept.failures = failures
        if let pair = stored.withLock({ $0 }) { kept.credentials = pair }
        if let record = stateRecord(kept, partition: origin.partition) {
            result.stateRecords = [record]
            result.newState = kept
        }
        return result
    }

    /// How long after its latest failure an account that failed `count` times in a row waits: ``failureBackoff``
    /// doubled per failure, capped, with a jitter of ±20 % fixed per account.
    func backoff(_ count: Int, accountId: String) -> Duration {
        let hash = StableHash.fnv1a(accountId.utf8)
        let jitter = 0.8 + 0.4 * Double(hash % 1_000) / 1_000
        return Backoff(initial: failureBackoff, maximum: maxFailureBackoff).delay(
            afterFailures: count, scaledBy: jitter)
    }

    /// Why a failing account's tick is held back now, or nil when it may run.
    private func holdBack(_ streak: FailureStreak, accountId: String, now: Date) -> String? {
        if now.timeIntervalSince(streak.since) >= autoPauseAfter.timeInterval {
            return
                "auto_paused: failing since \(WireFormat.formatDate(streak.since)) (\(streak.count) syncs in a row); "
                + "reconnect the account or run activity-sync accounts resume \(accountId) to try again"
        }
        let next = streak.last.addingTimeInterval(backoff(streak.count, accountId: accountId).timeInterval)
        guard now < next else { return nil }
        return "backing off: \(streak.count) failed syncs in a row since \(WireFormat.formatDate(streak.since)); "
            + "next attempt after \(WireFormat.formatDate(next))"
    }

    /// The account's previous state (which was written, so it fits), `lastJob` included — the job is not marked
    /// done — with `credentials`: how a refreshed token pair is stored apart from a job's output. Nil when it
    /// cannot be encoded or exceeds ``maxRecordBytes``.
    func credentialsRecord(
        _ credentials: CredentialState, job: SyncJob, partition: Int32, state: StateRecord?, now: Date = Date()
    ) -> (StateRecord, OutgoingRecord)? {
        var kept = Self.kept(state, job: job, now: now)
        kept.credentials = credentials
        return stateRecord(kept, partition: partition).map { (kept, $0) }
    }

    /// The account's state as the job found it (an empty one before its first sync), dated now: what a job that
    /// does not advance the account writes when it must record something beside it.
    private static func kept(_ state: StateRecord?, job: SyncJob, now: Date) -> StateRecord {
        var kept =
            state
            ?? StateRecord(
                accountId: job.accountId, integration: job.integration, lastJob: nil, updatedAt: now, data: [:])
        kept.updatedAt = now
        return kept
    }

    /// `state` as a record of the state topic, in the jobs partition's twin; nil when it cannot be encoded or exceeds
    /// ``maxRecordBytes``.
    private func stateRecord(_ state: StateRecord, partition: Int32) -> OutgoingRecord? {
        guard let value = try? WireFormat.encode(state) else { return nil }
        let record = OutgoingRecord(
            topic: topics.state, partition: partition, key: state.accountId, value: value,
            headers: CloudEvents.headers(for: state))
        return record.estimatedSize <= maxRecordBytes ? record : nil
    }

    /// The status record to write for a changed status; its reason is cut to ``maxReasonBytes``.
    func statusRecord(_ status: AccountStatus) -> OutgoingRecord? {
        var status = status
        status.reason = status.reason.map { Self.bounded($0, maxBytes: Self.maxReasonBytes) }
        do {
            return OutgoingRecord(topic: topics.status, key: status.accountId, value: try status.messageBytes())
        } catch {
            WorkerMetrics.dropped(.status, factory: metricsFactory)
            logger.error(
                "an account status cannot be encoded; it is not written",
                metadata: ["account": "\(status.accountId)", "error": "\(type(of: error))"])
            return nil
        }
    }

    /// `text` if it has at most `maxBytes` UTF-8 bytes, else as many of its first Unicode scalars as fit with "…".
    static func bounded(_ text: String, maxBytes: Int) -> String {
        guard text.utf8.count > maxBytes else { return text }
        let ellipsis = "…"
        var budget = maxBytes - ellipsis.utf8.count
        var end = text.unicodeScalars.startIndex
        for index in text.unicodeScalars.indices {
            budget -= UTF8.width(text.unicodeScalars[index])
            if budget < 0 { break }
            end = text.unicodeScalars.index(after: index)
        }
        return String(text.unicodeScalars[..<end]) + (maxBytes >= ellipsis.utf8.count ? ellipsis : "")
    }
}
