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

    private func run(
        _ job: SyncJob, origin: JobOrigin, account lookup: AccountLookup, state: StateRecord?,
        saveCredentials: SaveCredentials?, now: Date
    ) async -> JobResult {
        if DuplicateFire.isDuplicate(job, lastJob: state?.lastJob) {
            return JobResult(outcome: .duplicate)
        }
        let account: AccountRecord
        switch lookup {
        case .found(let record, _): account = record
        case .unknown(let reason): return deadLetter(Poison(.unknownAccount, reason), origin: origin, now: now)
        case .unavailable(let reason):
            // The accounts topic could not be read in time: not the job's fault. Nothing is written but the status;
            // the account's next tick runs it again.
            var result = JobResult(outcome: .failed)
            result.status = AccountStatus(
                accountId: job.accountId, integration: job.integration, status: .failing,
                reason: "the account's record could not be read: \(reason.prefix(200))", at: now)
            return result
        }
        if let pause = account.settings.paused {
            var result = JobResult(outcome: .paused)
            result.reason =
                "paused: the account was paused (\(pause.reason.rawValue)) at \(WireFormat.formatDate(pause.at))"
                + (pause.note.map { ": \($0)" } ?? "") + "; activity-sync accounts resume \(job.accountId) ends it"
            return result
        }
        guard account.integration == job.integration else {
            return deadLetter(
                Poison(
                    .integrationMismatch,
                    "the job names integration \"\(job.integration.prefix(40))\" but account \(job.accountId.prefix(60)) "
                        + "is a \"\(account.integration.prefix(40))\" account on the accounts topic"),
                origin: origin, now: now)
        }
        guard let integration = integrations[job.integration] else {
            return deadLetter(
                Poison(.unknownIntegration, "integration \"\(job.integration)\" is not loaded"), origin: origin)
        }
        // A streak counts only while the account's record is the one it failed with: reconnecting or resuming the
        // account starts afresh.
        let streak = state?.failures.flatMap { account.updatedAt > $0.last ? nil : $0 }
        if job.since == nil, let streak, let reason = holdBack(streak, accountId: job.accountId, now: now) {
            var result = JobResult(outcome: .backingOff)
            result.reason = reason
            return result
        }
        let tag = Self.configTag(account.sealedConfig)
        let credentials = state?.credentials.flatMap { $0.accountConfigTag == tag ? $0 : nil }
        if credentials?.rejected == true {
            // The token was rejected and the account was not reconnected since: asking again only burns requests.
            var result = JobResult(outcome: .needsReauth)
            result.status = AccountStatus(
                accountId: job.accountId, integration: job.integration, status: .needsReauth,
                reason: "the token was rejected; reconnect the account", at: now)
            return result
        }
        var config: JSONValue
        switch sealer.openConfig(account.sealedConfig) {
        case .failure(let poison): return deadLetter(poison, origin: origin, now: now)
        case .success(let opened): config = opened
        }
        if let refreshed = credentials?.refreshed, case .success(let opened) = sealer.openConfig(refreshed) {
            config = opened
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

        var outcome: SyncOutcome?
        var lastError = ""
        for attempt in 1...max(1, maxAttempts) {
            do {
                outcome = try await integration.sync(request)
                break
            } catch let error as IntegrationError {
                switch error.kind {
                case .permanent:
                    return deadLetter(Poison(.permanentFailure, error.message), origin: origin, now: now)
                case .invalidConfig:
                    return deadLetter(Poison(.invalidConfig, error.message), origin: origin, now: now)
                case .transient:
                    lastError = error.message
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
        guard let outcome else {
            // Cancelled (a revocation's deadline, a lost partition, shutdown): not the account's fault, so its status
            // stays; the job runs again from the committed offset.
            if Task.isCancelled { return JobResult(outcome: .failed) }
            var result = JobResult(outcome: .failed)
            // The streak goes into the state record (the account's state otherwise as it was): the next ticks back
            // off, and a week of failures pauses the account.
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
        return records(
            for: outcome, job: job, origin: origin, state: state, tag: tag, credentials: credentials, now: now)
    }

    private func records(
        for outcome: SyncOutcome, job: SyncJob, origin: JobOrigin, state: StateRecord?, tag: String,
        credentials: CredentialState?, now: Date
    ) -> JobResult {
        var result: JobResult
        var newCredentials = credentials
        let status: AccountStatus.Status
        let reason: String?
        switch outcome.status {
        case .complete:
            result = JobResult(outcome: .synced)
            status = .ok
            reason = nil
        case .partial(let why, _):
            result = JobResult(outcome: .partial)
            status = .ok
            reason = why
        case .failed(let why):
            // Failed, with something to keep (an SDK CLI's refreshed config): written with the unchanged state.
            result = JobResult(outcome: .failed)
            status = .failing
            reason = "sync failed: \(why.prefix(200))"
        case .needsReauth(let why):
            result = JobResult(outcome: .needsReauth)
            status = .needsReauth
            reason = why
            newCredentials = CredentialState(accountConfigTag: tag, refreshed: credentials?.refreshed, rejected: true)
        }
        var refreshedCredentials: CredentialState?
        if let updated = outcome.updatedConfig {
            do {
                let sealed = try sealer.seal(updated)
                newCredentials = CredentialState(
                    accountConfigTag: tag, refreshed: sealed, rejected: newCredentials?.rejected ?? false)
                refreshedCredentials = newCredentials
            } catch {
                // The integration already swapped the token pair: writing the output without it would leave the
                // account on a pair that no longer works, and nobody would know why.
                WorkerMetrics.dropped(.refreshedCredentials, factory: metricsFactory)
                logger.error(
                    "could not seal a refreshed token pair; the job fails and writes nothing",
                    metadata: ["account": "\(job.accountId)", "error": "\(type(of: error))"])
                var failed = JobResult(outcome: .failed)
                failed.status = AccountStatus(
                    accountId: job.accountId, integration: job.integration, status: .failing,
                    reason: "the token pair was refreshed but could not be sealed (\(type(of: error))); "
                        + "check the worker's sealing key; the account may need reconnecting",
                    at: now)
                return failed
            }
        }
        for activity in outcome.activities {
            guard let record = activityRecord(activity, integration: job.integration, key: job.accountId) else {
                continue
            }
            result.records.append(record)
        }
        result.activityCount = result.records.count  // written ones: a dropped activity was logged and counted
        let newState = StateRecord(
            accountId: job.accountId, integration: job.integration,
            lastJob: DuplicateFire.marker(after: job, previous: state?.lastJob), updatedAt: now, data: outcome.state,
            credentials: newCredentials)
        let stateRecord: OutgoingRecord
        do {
            stateRecord = OutgoingRecord(
                topic: topics.state, partition: origin.partition, key: job.accountId,
                value: try WireFormat.encode(newState), headers: CloudEvents.headers(for: newState))
        } catch {
            WorkerMetrics.dropped(.state, factory: metricsFactory)
            logger.error(
                "the integration's state cannot be encoded; the job goes to the dead-letter topic",
                metadata: ["account": "\(job.accountId)", "error": "\(type(of: error))"])
            return unwritableOutput(
                Poison(.outputNotEncodable, "the state record cannot be encoded as JSON (\(type(of: error)))"),
                job: job, origin: origin, state: state, refreshedCredentials: refreshedCredentials, now: now)
        }
        guard stateRecord.estimatedSize <= maxRecordBytes else {
            // State cannot be shortened without losing the sync's position: nothing of this job is written, and
            // as the state does not advance, its activities are read again once the integration is fixed.
            WorkerMetrics.dropped(.state, factory: metricsFactory)
            logger.error(
                "the state record exceeds maxRecordBytes; the job goes to the dead-letter topic",
                metadata: [
                    "account": "\(job.accountId)", "size": "\(stateRecord.estimatedSize)",
                    "maxRecordBytes": "\(maxRecordBytes)", "activities": "\(outcome.activities.count)",
                ])
            return unwritableOutput(
                Poison(
                    .outputTooLarge,
                    "state record of \(stateRecord.estimatedSize) bytes exceeds maxRecordBytes \(maxRecordBytes)"),
                job: job, origin: origin, state: state, refreshedCredentials: refreshedCredentials, now: now)
        }
        result.stateRecords.append(stateRecord)
        result.newState = newState
        result.status = AccountStatus(
            accountId: job.accountId, integration: job.integration, status: status, reason: reason, at: now)
        return result
    }

    /// A job whose output cannot be written: dead-lettered, the account marked failing, its state unchanged —
    /// except for a token pair the sync refreshed, which is kept beside the previous state, because the old pair
    /// no longer works.
    private func unwritableOutput(
        _ poison: Poison, job: SyncJob, origin: JobOrigin, state: StateRecord?, refreshedCredentials: CredentialState?,
        now: Date
    ) -> JobResult {
        var result = deadLetter(poison, origin: origin, now: now)
        result.status = AccountStatus(
            accountId: job.accountId, integration: job.integration, status: .failing,
            reason: "the sync's output cannot be written: \(poison.reason); the job is on the dead-letter topic",
            at: now)
        guard let refreshedCredentials else { return result }
        if let (kept, record) = credentialsRecord(
            refreshedCredentials, job: job, partition: origin.partition, state: state, now: now)
        {
            result.stateRecords = [record]
            result.newState = kept
            return result
        }
        WorkerMetrics.dropped(.refreshedCredentials, factory: metricsFactory)
        logger.error(
            "the refreshed token pair cannot be saved beside the previous state; the account may need reconnecting",
            metadata: ["account": "\(job.accountId)"])
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

    /// An activity's record, its text shortened (and marked `truncated`) when the whole would exceed
    /// ``maxRecordBytes``; nil, logged and counted when even that cannot make it fit or it cannot be encoded.
    private func activityRecord(_ activity: Activity, integration: String, key: String) -> OutgoingRecord? {
        let headers = CloudEvents.headers(for: activity, integration: integration)
        func record(_ activity: Activity) throws -> OutgoingRecord {
            OutgoingRecord(
                topic: topics.activities, key: key, value: try activity.messageBytes(), headers: headers)
        }
        do {
            var candidate = try record(activity)
            var shortened = activity
            shortened.truncated = true
            var textBytes = activity.text.utf8.count
            // Each byte cut from the text shrinks the JSON by at least a byte (escapes only make it longer), so
            // cutting the excess plus room for the marker and the ellipsis fits in one step, or two at most.
            while candidate.estimatedSize > maxRecordBytes {
                guard textBytes > 0 else {
                    WorkerMetrics.dropped(.activity, factory: metricsFactory)
                    logger.error(
                        "an activity exceeds maxRecordBytes even without its text; it is not written",
                        metadata: [
                            "account": "\(key)", "size": "\(candidate.estimatedSize)",
                            "maxRecordBytes": "\(maxRecordBytes)",
                        ])
                    return nil
                }
                let excess = candidate.estimatedSize - maxRecordBytes
                textBytes = max(0, min(textBytes, shortened.text.utf8.count) - excess - 32)
                shortened.text = Self.bounded(activity.text, maxBytes: textBytes + 3)
                candidate = try record(shortened)
            }
            if shortened.text != activity.text {
                WorkerMetrics.truncated(.activity, factory: metricsFactory)
                logger.warning(
                    "an activity's text was cut to fit in maxRecordBytes",
                    metadata: [
                        "account": "\(key)", "textBytes": "\(activity.text.utf8.count)",
                        "keptBytes": "\(shortened.text.utf8.count)",
                    ])
            }
            return candidate
        } catch {
            WorkerMetrics.dropped(.activity, factory: metricsFactory)
            logger.error(
                "an activity cannot be encoded; it is not written",
                metadata: ["account": "\(key)", "error": "\(type(of: error))"])
            return nil
        }
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
