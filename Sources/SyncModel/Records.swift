public import Foundation

/// An account's integration config after sealing with AES-256-GCM.
///
/// `keyId` names the sealing key so keys can rotate: a reader picks the key by id, and a record sealed under a
/// retired key fails with a clear error instead of garbage. `ciphertext` is base64 of nonce ‖ ciphertext ‖ tag.
public struct SealedConfig: Codable, Sendable, Hashable {
    public var keyId: String
    public var algorithm: String
    public var ciphertext: String

    /// The one algorithm configs are sealed with.
    public static let algorithm = "AES-256-GCM"

    public init(keyId: String, algorithm: String = SealedConfig.algorithm, ciphertext: String) {
        self.keyId = keyId
        self.algorithm = algorithm
        self.ciphertext = ciphertext
    }
}

/// One thing that happened, for the knowledge graph. `text` and `sourceURL` are the reference SDK's fields;
/// the rest are additions that let an ingestor dedupe (`id`) and structure without parsing text.
public struct Activity: Codable, Sendable, Hashable {
    public var text: String
    public var sourceURL: String
    /// Stable: the same GitHub input always yields the same id (`github:notification:{thread}:{updated_at}`,
    /// `github:event:{event id}`).
    public var id: String
    public var occurredAt: Date
    public var kind: String
    public var repo: String?
    public var number: Int?
    public var actor: String?
    public var accountId: String
    /// The web permalink of the comment that caused it (a notification's latest comment, the user's own comment),
    /// beside `sourceURL`, which names the whole conversation.
    public var commentURL: String?
    /// `true` when the worker cut `text` so the record fits in a Kafka message; omitted otherwise.
    public var truncated: Bool?
    /// Why the activity says less than usual, when it does: ``Activity/subjectUnavailable`` when GitHub refused the
    /// issue or pull request (403, e.g. SAML SSO; 404; 410) and the text is what the notification itself says.
    public var detail: String?

    /// `detail` of an activity whose subject GitHub would not show.
    public static let subjectUnavailable = "subject_unavailable"

    public init(
        text: String, sourceURL: String, id: String, occurredAt: Date, kind: String, repo: String? = nil,
        number: Int? = nil, actor: String? = nil, accountId: String, commentURL: String? = nil, truncated: Bool? = nil,
        detail: String? = nil
    ) {
        self.detail = detail
        self.text = text
        self.sourceURL = sourceURL
        self.id = id
        self.occurredAt = occurredAt
        self.kind = kind
        self.repo = repo
        self.number = number
        self.actor = actor
        self.accountId = accountId
        self.commentURL = commentURL
        self.truncated = truncated
    }
}

/// The reference SDK's envelope: `{"type": …, "data": …}`.
public struct Envelope<Payload: Codable & Sendable>: Codable, Sendable {
    public var type: String
    public var data: Payload

    public init(type: String, data: Payload) {
        self.type = type
        self.data = data
    }
}

extension Activity {
    /// `{"type":"activity","data":{…}}`, the value written to the activities topic.
    public func messageBytes() throws -> [UInt8] { try WireFormat.encode(Envelope(type: "activity", data: self)) }
}

/// The last processed job of an account, kept beside its state to recognise duplicate fires.
public struct JobMarker: Codable, Sendable, Hashable {
    public var jobId: String
    public var scheduledAt: Date

    public init(jobId: String, scheduledAt: Date) {
        self.jobId = jobId
        self.scheduledAt = scheduledAt
    }
}

/// The value on the state topic (compacted, key = accountId).
///
/// `type` and `data` keep the reference shape (`data` is the integration's own state, e.g. `lastSyncTime`,
/// `lastUserEventTime`, `username`); the other fields are the worker's bookkeeping.
public struct StateRecord: Codable, Sendable, Hashable {
    public var type: String
    public var accountId: String
    public var integration: String
    public var lastJob: JobMarker?
    public var updatedAt: Date
    public var data: JSONValue
    /// What the worker learned about the account's credentials (a refreshed token pair, a rejected token).
    public var credentials: CredentialState?
    /// The account's syncs that failed in a row (transient failures, not cancellations); absent after a success.
    public var failures: FailureStreak?

    public init(
        accountId: String, integration: String, lastJob: JobMarker?, updatedAt: Date, data: JSONValue,
        credentials: CredentialState? = nil, failures: FailureStreak? = nil
    ) {
        self.type = "state"
        self.accountId = accountId
        self.integration = integration
        self.lastJob = lastJob
        self.updatedAt = updatedAt
        self.data = data
        self.credentials = credentials
        self.failures = failures
    }
}

/// Failed syncs of an account in a row: what stretches its effective schedule (backoff) and, after long enough,
/// pauses it. Any change to the account's record (reconnected, resumed) starts it afresh.
public struct FailureStreak: Codable, Sendable, Hashable {
    public var count: Int
    /// The first failure of the streak.
    public var since: Date
    /// The latest failure.
    public var last: Date

    public init(count: Int, since: Date, last: Date) {
        self.count = count
        self.since = since
        self.last = last
    }
}

/// The worker's memory of an account's credentials, kept in the state record beside the account's record on the
/// accounts topic (which keeps the pair the account was connected with).
///
/// A refreshed token pair invalidates the old one, so the worker uses the one it saved here from then on; a
/// rejected token must not be retried every tick. Both apply only while the account's record carries the same
/// sealed config (`accountConfigTag`, the GCM tag at the end of its ciphertext, which is unique per sealing):
/// reconnecting the account replaces them.
public struct CredentialState: Codable, Sendable, Hashable {
    public var accountConfigTag: String
    public var refreshed: SealedConfig?
    public var rejected: Bool

    public init(accountConfigTag: String, refreshed: SealedConfig? = nil, rejected: Bool = false) {
        self.accountConfigTag = accountConfigTag
        self.refreshed = refreshed
        self.rejected = rejected
    }
}

/// What `integration … setup` prints: the reference SDK's account message, with the config in plaintext.
/// It never goes to Kafka as is; `accounts import` seals the config first.
public struct AccountSetup: Codable, Sendable, Hashable {
    public var accountId: String
    public var config: JSONValue
    public var settings: JSONValue

    public init(accountId: String, config: JSONValue, settings: JSONValue) {
        self.accountId = accountId
        self.config = config
        self.settings = settings
    }
}

/// Per-account settings the scheduler acts on.
public struct AccountSettings: Codable, Sendable, Hashable {
    public var username: String?
    public var schedule: Schedule
    public var enabled: Bool
    /// Set while the account is paused: schedulers fire no job for it and workers skip jobs that still arrive.
    /// Absent on a record written by `accounts add`/`import` — reconnecting an account resumes it.
    public var paused: Pause?

    public struct Schedule: Codable, Sendable, Hashable {
        public var frequency: String
        public init(frequency: String) { self.frequency = frequency }
    }

    /// Why an account is paused and since when.
    public struct Pause: Codable, Sendable, Hashable {
        public enum Reason: String, Codable, Sendable {
            /// `accounts pause` (by account or integration); `accounts resume` ends it.
            case manual
            /// Reserved in the format; nothing writes it. A rejected token holds an account's jobs through its status
            /// record instead (``AccountStatus/holdsJobs(ofRecord:)``): a worker rewriting the account record would
            /// race a reconnect and could undo it.
            case needsReauth = "needs_reauth"
        }

        public var reason: Reason
        public var at: Date
        /// What the person or worker that paused it said.
        public var note: String?

        public init(reason: Reason, at: Date, note: String? = nil) {
            self.reason = reason
            self.at = at
            self.note = note
        }
    }

    public init(
        username: String? = nil, frequency: String = "*/5 * * * *", enabled: Bool = true, paused: Pause? = nil
    ) {
        self.username = username
        self.schedule = Schedule(frequency: frequency)
        self.enabled = enabled
        self.paused = paused
    }

    /// Whether schedulers fire jobs for the account: enabled and not paused.
    public var isActive: Bool { enabled && paused == nil }
}

/// The value on the accounts topic (compacted, key = accountId; a tombstone removes the account).
/// Written as `{"type":"account","data":{…}}`; the config is only ever present sealed.
public struct AccountRecord: Codable, Sendable, Hashable {
    public var accountId: String
    public var integration: String
    public var settings: AccountSettings
    public var sealedConfig: SealedConfig
    public var updatedAt: Date

    public init(
        accountId: String, integration: String, settings: AccountSettings, sealedConfig: SealedConfig,
        updatedAt: Date
    ) {
        self.accountId = accountId
        self.integration = integration
        self.settings = settings
        self.sealedConfig = sealedConfig
        self.updatedAt = updatedAt
    }

    public func messageBytes() throws -> [UInt8] { try WireFormat.encode(Envelope(type: "account", data: self)) }

    public static func decodeMessage(_ bytes: some Collection<UInt8>) throws -> AccountRecord {
        let envelope = try WireFormat.decode(Envelope<AccountRecord>.self, from: bytes)
        guard envelope.type == "account" else {
            throw RecordError.wrongType(expected: "account", found: envelope.type)
        }
        return envelope.data
    }
}

/// An account's health as the worker last saw it, on the status topic (compacted, key = accountId).
public struct AccountStatus: Codable, Sendable, Hashable {
    public enum Status: String, Codable, Sendable {
        case ok
        /// The token was rejected (401) and could not be refreshed: a person must reconnect the account.
        case needsReauth = "needs_reauth"
        case failing
    }

    public var accountId: String
    public var integration: String
    public var status: Status
    public var reason: String?
    public var at: Date
    /// The version of the account's record (``AccountVersion``, 16 hex digits) the worker ran the job with. For
    /// `needs_reauth`, schedulers fire no job for the account while its record is still this version. Absent on
    /// records written before it existed (and when the record could not be read): those hold nothing back.
    public var accountVersion: String?

    public init(
        accountId: String, integration: String, status: Status, reason: String?, at: Date,
        accountVersion: String? = nil
    ) {
        self.accountId = accountId
        self.integration = integration
        self.status = status
        self.reason = reason
        self.at = at
        self.accountVersion = accountVersion
    }

    /// Whether this status holds the account's jobs back while its record is `current`: a `needs_reauth` judged on
    /// that very version. An old record without `accountVersion` never does.
    public func holdsJobs(ofRecord current: AccountVersion?) -> Bool {
        guard status == .needsReauth, let judged = accountVersion.flatMap(AccountVersion.init), let current else {
            return false
        }
        return judged == current
    }

    public func messageBytes() throws -> [UInt8] { try WireFormat.encode(Envelope(type: "status", data: self)) }
}

/// A job the worker could not process, on `activity-sync.jobs.dlq`.
///
/// The original bytes are kept (base64) so nothing is lost and the job can be replayed once fixed; they contain
/// at most a sealed config, never a plaintext token. A value too large to fit in a dead-letter record is kept as a
/// prefix (`originalValueTruncated`), and `originalSize` and `originalSHA256` still describe the whole value, so a
/// poison job never makes its own dead letter unwritable.
public struct DeadLetter: Codable, Sendable, Hashable {
    public var reason: String
    public var code: String
    public var originalTopic: String
    public var originalPartition: Int
    public var originalOffset: Int64
    public var originalKey: String?
    /// The job's bytes, base64 — only their first bytes when `originalValueTruncated` is true.
    public var originalValueBase64: String
    /// The size of the job's whole value in bytes. Absent only on letters written before workers recorded it.
    public var originalSize: Int?
    /// SHA-256 of the job's whole value, lowercase hex; absent when the writer did not compute it.
    public var originalSHA256: String?
    /// True when `originalValueBase64` holds a prefix only, because the whole value would not fit in a record.
    public var originalValueTruncated: Bool?

    public var failedAt: Date
    public var workerId: String

    /// A dead letter that keeps the whole original value. It carries no digest: the worker uses
    /// ``init(reason:code:originalTopic:originalPartition:originalOffset:originalKey:originalValuePrefix:originalSize:originalSHA256:failedAt:workerId:)``.
    public init(
        reason: String, code: String, originalTopic: String, originalPartition: Int, originalOffset: Int64,
        originalKey: String?, originalValue: [UInt8], failedAt: Date, workerId: String
    ) {
        self.init(
            reason: reason, code: code, originalTopic: originalTopic, originalPartition: originalPartition,
            originalOffset: originalOffset, originalKey: originalKey, originalValuePrefix: originalValue,
            originalSize: originalValue.count, originalSHA256: nil, failedAt: failedAt, workerId: workerId)
    }

    /// A dead letter that keeps the first bytes of the original value, and the size and digest of all of it.
    ///
    /// - Parameters:
    ///   - originalValuePrefix: the original value, or its first bytes when the whole would not fit in a record.
    ///   - originalSize: the whole value's size; `originalValueTruncated` is true when the prefix is shorter.
    ///   - originalSHA256: SHA-256 of the whole value, lowercase hex.
    public init(
        reason: String, code: String, originalTopic: String, originalPartition: Int, originalOffset: Int64,
        originalKey: String?, originalValuePrefix: some Collection<UInt8>, originalSize: Int, originalSHA256: String?,
        failedAt: Date, workerId: String
    ) {
        self.reason = reason
        self.code = code
        self.originalTopic = originalTopic
        self.originalPartition = originalPartition
        self.originalOffset = originalOffset
        self.originalKey = originalKey
        self.originalValueBase64 = Data(originalValuePrefix).base64EncodedString()
        self.originalSize = originalSize
        self.originalSHA256 = originalSHA256
        self.originalValueTruncated = originalValuePrefix.count < originalSize
        self.failedAt = failedAt
        self.workerId = workerId
    }

    /// Whether only a prefix of the original value is kept; false for letters written before truncation existed.
    public var isTruncated: Bool { originalValueTruncated == true }

    public func messageBytes() throws -> [UInt8] { try WireFormat.encode(Envelope(type: "dead_letter", data: self)) }

    /// Headers an operator can filter on without decoding the value.
    public var headers: [(String, String)] {
        var headers = [
            (DeadLetterHeader.reason, reason),
            (DeadLetterHeader.code, code),
            (DeadLetterHeader.originalTopic, originalTopic),
            (DeadLetterHeader.originalPartition, String(originalPartition)),
            (DeadLetterHeader.originalOffset, String(originalOffset)),
            (DeadLetterHeader.workerId, workerId),
        ]
        if let originalSize { headers.append((DeadLetterHeader.originalSize, String(originalSize))) }
        if let originalSHA256 { headers.append((DeadLetterHeader.originalSHA256, originalSHA256)) }
        headers.append((DeadLetterHeader.truncated, isTruncated ? "true" : "false"))
        return headers
    }
}

public enum DeadLetterHeader {
    public static let reason = "dlq_reason"
    public static let code = "dlq_code"
    public static let originalTopic = "dlq_original_topic"
    public static let originalPartition = "dlq_original_partition"
    public static let originalOffset = "dlq_original_offset"
    public static let workerId = "dlq_worker_id"
    /// The whole original value's size in bytes, decimal.
    public static let originalSize = "dlq_original_size"
    /// SHA-256 of the whole original value, lowercase hex.
    public static let originalSHA256 = "dlq_original_sha256"
    /// `true` when the value keeps only a prefix of the original, else `false`.
    public static let truncated = "dlq_truncated"
}

/// CloudEvents Kafka protocol binding, binary mode: `ce_`-prefixed headers so an ingestor can dedupe on
/// `ce_id` and route on `ce_type` without parsing the value.
public enum CloudEvents {
    public static let activityType = "dev.activity-sync.activity"
    public static let stateType = "dev.activity-sync.state"

    public static func headers(id: String, source: String, type: String, time: Date) -> [(String, String)] {
        [
            ("ce_specversion", "1.0"),
            ("ce_id", id),
            ("ce_source", source),
            ("ce_type", type),
            ("ce_time", WireFormat.formatDate(time)),
            ("content-type", "application/json"),
        ]
    }

    public static func headers(for activity: Activity, integration: String) -> [(String, String)] {
        headers(
            id: activity.id, source: "/activity-sync/\(integration)/\(activity.accountId)", type: activityType,
            time: activity.occurredAt)
    }

    public static func headers(for state: StateRecord) -> [(String, String)] {
        let id = "state:\(state.accountId):\(state.lastJob?.jobId ?? WireFormat.formatDate(state.updatedAt))"
        return headers(
            id: id, source: "/activity-sync/\(state.integration)/\(state.accountId)", type: stateType,
            time: state.updatedAt)
    }
}

public struct RecordError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public static func wrongType(expected: String, found: String) -> RecordError {
        RecordError(description: "expected a record of type \"\(expected)\", found \"\(found)\"")
    }

    public init(description: String) { self.description = description }
}

/// What one consumed job did, on `<prefix>.runs` (retention, key = accountId): written in the same transaction as
/// the job's output and offset, so a `read_committed` reader sees exactly one run record per committed job and none
/// for work that was aborted. `enqueue --wait` and `accounts show` read them.
public struct RunRecord: Codable, Sendable, Hashable {
    public enum Outcome: String, Codable, Sendable, CaseIterable {
        /// Everything due was read.
        case succeeded
        /// Stopped early (deadline, rate limit, a failing page); progress saved, the rest comes with a later job.
        case partial
        /// The integration failed transiently on every attempt (or its account record could not be read); nothing
        /// but this record and the status written; the next tick runs again.
        case failed
        /// The token was rejected and could not be refreshed.
        case needsReauth = "needs_reauth"
        /// A newer job of the account was waiting behind it: that one ran instead (a backlog after an outage).
        case coalesced
        /// Not run: a tick that had already run (a duplicate fire).
        case skipped
        /// Poison: the job is on the dead-letter topic with the reason.
        case deadLettered = "dead_lettered"
    }

    /// From the record key; nil only for a dead-lettered job without one.
    public var accountId: String?
    public var integration: String?
    /// Nil only for a dead-lettered job whose bytes named none.
    public var jobId: String?
    public var scheduledAt: Date?
    public var outcome: Outcome
    public var startedAt: Date
    public var finishedAt: Date
    /// Activities written by this job.
    public var activities: Int
    /// Why, for anything but `succeeded`.
    public var reason: String?
    /// Where the job was on the jobs topic.
    public var partition: Int
    public var offset: Int64
    public var workerId: String

    public init(
        accountId: String?, integration: String?, jobId: String?, scheduledAt: Date?, outcome: Outcome,
        startedAt: Date, finishedAt: Date, activities: Int, reason: String?, partition: Int, offset: Int64,
        workerId: String
    ) {
        self.accountId = accountId
        self.integration = integration
        self.jobId = jobId
        self.scheduledAt = scheduledAt
        self.outcome = outcome
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.activities = activities
        self.reason = reason
        self.partition = partition
        self.offset = offset
        self.workerId = workerId
    }

    public func messageBytes() throws -> [UInt8] { try WireFormat.encode(Envelope(type: "run", data: self)) }

    public static func decodeMessage(_ bytes: some Collection<UInt8>) throws -> RunRecord {
        let envelope = try WireFormat.decode(Envelope<RunRecord>.self, from: bytes)
        guard envelope.type == "run" else { throw RecordError.wrongType(expected: "run", found: envelope.type) }
        return envelope.data
    }
}
