public import Foundation

// The jobs topic's record format, in one place: the job, how its id is made, how it is written (fast, byte for
// byte what `WireFormat` writes) and how a worker reads it back (field by field, naming what is wrong).
// Everything that publishes or consumes jobs — scheduler, `enqueue`, `accounts resync`, worker — goes through
// this file, and `JobFormatTests` pins the bytes.

/// A request to sync one account, as published to the jobs topic (key = accountId, murmur2 partitioner).
///
/// A job carries no secret: the worker owning jobs partition p reads the account's sealed config from accounts
/// partition p and its state from state partition p (a co-partitioned join), so a token lives in the compacted
/// accounts topic once instead of in every job on a topic kept for days, and a job always runs with the account's
/// current config. Jobs written before this (with a `sealedConfig`) are still run: the copy they carry is ignored.
///
/// `jobId` is `"{accountId}@{scheduledAt}"` for a scheduled tick: deterministic, so two schedulers firing the same
/// tick (or `enqueue` standing in for one) produce the same id and a worker recognises the repeat.
public struct SyncJob: Codable, Sendable, Hashable {
    public var type: String
    public var jobId: String
    public var accountId: String
    public var integration: String
    public var scheduledAt: Date
    public var attempt: Int
    /// A one-off re-read from this time (`accounts resync`); nil for a regular tick.
    public var since: Date?

    public init(
        accountId: String, integration: String, scheduledAt: Date, attempt: Int = 1, since: Date? = nil,
        jobId: String? = nil
    ) {
        self.type = "sync"
        self.accountId = accountId
        self.integration = integration
        self.scheduledAt = scheduledAt
        self.attempt = attempt
        self.since = since
        self.jobId = jobId ?? SyncJob.makeId(accountId: accountId, scheduledAt: scheduledAt)
    }

    /// The id of the job for a tick: `"{accountId}@{scheduledAt}"`, `scheduledAt` in ``WireFormat``'s format.
    public static func makeId(accountId: String, scheduledAt: Date) -> String {
        "\(accountId)@\(WireFormat.formatDate(scheduledAt))"
    }

    /// The job of `account`'s tick at `tick`: the very job (same id) a scheduler fires for that tick.
    public init(account: AccountRecord, tick: Date) {
        self.init(accountId: account.accountId, integration: account.integration, scheduledAt: tick)
    }

    /// A one-off job re-reading `account` from `since`, scheduled at ``resyncTime(_:)`` of `now`.
    public init(resyncing account: AccountRecord, since: Date, now: Date = Date()) {
        self.init(
            accountId: account.accountId, integration: account.integration, scheduledAt: Self.resyncTime(now),
            since: since)
    }

    /// `now` to the millisecond, never on a whole second.
    ///
    /// Ticks are whole seconds, so a resync's id can never equal a tick's id — which a worker would take for a
    /// duplicate fire and skip.
    public static func resyncTime(_ now: Date) -> Date {
        var millis = (now.timeIntervalSince1970 * 1000).rounded(.down)
        if millis.truncatingRemainder(dividingBy: 1000) == 0 { millis += 1 }
        return Date(timeIntervalSince1970: millis / 1000)
    }
}

/// Writes jobs for the jobs topic.
///
/// At a million accounts the scheduler writes tens of thousands of jobs a second in bursts; `JSONEncoder` is the
/// bottleneck there, so plain jobs are written by hand — byte for byte what `SyncJob`'s `Codable` conformance
/// writes through ``WireFormat`` (sorted keys, unescaped slashes; `JobFormatTests` checks they agree). Anything
/// needing escapes, and resync jobs, go through ``WireFormat``.
public struct JobEncoder: Sendable {
    /// Jobs of one tick share their `scheduledAt`; formatting a date is the slow part, so the last one is kept.
    private var lastDate: Date?
    private var lastText = ""

    public init() {}

    /// The value bytes of the regular (not resync) job of a tick; the same as `encode(SyncJob(…))`, faster.
    public mutating func encodeTick(accountId: String, integration: String, scheduledAt: Date) throws -> [UInt8] {
        let date = format(scheduledAt)
        let job = SyncJob(
            accountId: accountId, integration: integration, scheduledAt: scheduledAt, jobId: "\(accountId)@\(date)")
        return try encode(job, formattedDate: date)
    }

    /// The job's value bytes.
    public mutating func encode(_ job: SyncJob) throws -> [UInt8] {
        try encode(job, formattedDate: format(job.scheduledAt))
    }

    private mutating func format(_ date: Date) -> String {
        if date != lastDate {
            lastDate = date
            lastText = WireFormat.formatDate(date)
        }
        return lastText
    }

    private func encode(_ job: SyncJob, formattedDate: String) throws -> [UInt8] {
        guard job.since == nil, [job.accountId, job.integration, job.jobId, job.type].allSatisfy(Self.isPlain) else {
            return try WireFormat.encode(job)
        }
        var out: [UInt8] = []
        out.reserveCapacity(120 + 2 * job.accountId.utf8.count)
        func append(_ text: String) { out.append(contentsOf: text.utf8) }
        append("{\"accountId\":\"")
        append(job.accountId)
        append("\",\"attempt\":")
        append(String(job.attempt))
        append(",\"integration\":\"")
        append(job.integration)
        append("\",\"jobId\":\"")
        append(job.jobId)
        append("\",\"scheduledAt\":\"")
        append(formattedDate)
        append("\",\"type\":\"")
        append(job.type)
        append("\"}")
        return out
    }

    /// No byte JSON would escape: no quote, backslash or control character.
    private static func isPlain(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    }
}

/// Why a job went to the dead-letter topic. The raw value is the `dlq_code` header, stable for dashboards: never
/// rename or remove a case.
public enum PoisonKind: String, Sendable, CaseIterable, Hashable {
    case emptyValue = "empty_value"
    case tooLarge = "too_large"
    case notJSON = "not_json"
    case notObject = "not_object"
    case missingField = "missing_field"
    case wrongFieldType = "wrong_field_type"
    case unsupportedType = "unsupported_type"
    case emptyJobId = "empty_job_id"
    case emptyAccountId = "empty_account_id"
    case keyMismatch = "key_mismatch"
    case unknownIntegration = "unknown_integration"
    case scheduledAtOutOfRange = "scheduled_at_out_of_range"
    case invalidAttempt = "invalid_attempt"
    case unsupportedAlgorithm = "unsupported_algorithm"
    case unknownSealingKey = "unknown_sealing_key"
    case unsealFailed = "unseal_failed"
    case configNotObject = "config_not_object"
    /// No longer produced: what a config must hold is the integration's business, so a GitHub config without an
    /// `access_token` is now `invalid_config`. Kept so the code is never reused for something else.
    case configMissingAccessToken = "config_missing_access_token"
    /// The integration said the input can never be processed.
    case permanentFailure = "permanent_failure"
    /// The integration rejected the config (a field missing or of the wrong type).
    case invalidConfig = "invalid_config"
    /// The job ran, but the cluster refused to store its output (a record too large for the topic, say).
    case outputRejected = "output_rejected"
    /// The sync's output cannot be written: its state record is larger than a Kafka record may be.
    case outputTooLarge = "output_too_large"
    /// The sync's output cannot be written: its state record cannot be encoded as JSON (e.g. a NaN number).
    case outputNotEncodable = "output_not_encodable"
    /// The job arrived in a jobs partition other than the one its account id hashes to (murmur2), where the
    /// account's state does not live: run there, it would start from empty state and repeat a first sync.
    case wrongPartition = "wrong_partition"
    /// The job's account is not on the accounts topic in the partition its id hashes to (never added, removed, or
    /// written there by a producer with another partitioner), so there is no config to run it with.
    case unknownAccount = "unknown_account"
    /// The job names another integration than its account's record.
    case integrationMismatch = "integration_mismatch"
}

/// A job that can never be processed, and why. The reason is written for an operator and never contains the
/// config or token.
public struct Poison: Error, Sendable, Hashable, CustomStringConvertible {
    public var kind: PoisonKind
    public var reason: String

    public init(_ kind: PoisonKind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    public var description: String { "\(kind.rawValue): \(reason)" }
}

/// Turns the bytes of a jobs-topic record into a `SyncJob`, or says precisely why they are poison.
///
/// The checks are done field by field on the parsed JSON rather than by `Codable`, so the dead-letter reason
/// names the field an operator must fix. Opening the sealed config is the sealer's part
/// (`ConfigSealer.openConfig` in Sealing); what the config must contain is the integration's.
public struct JobDecoder: Sendable {
    /// The integration keys this worker can run.
    public var integrations: Set<String>
    /// Larger values are refused before parsing; a real job is well under a kilobyte.
    public var maxValueBytes = 1 << 20
    /// How far in the future `scheduledAt` may lie (clock skew between scheduler and worker).
    public var maxFutureSkew: TimeInterval = 24 * 3600
    /// How far in the past `scheduledAt` may lie before it is considered corrupt rather than late.
    public var maxAge: TimeInterval = 365 * 24 * 3600

    public init(integrations: Set<String>) {
        self.integrations = integrations
    }

    /// Validates a record's key and value.
    public func decode(key: [UInt8]?, value: [UInt8]?, now: Date = Date()) -> Result<SyncJob, Poison> {
        guard let value, !value.isEmpty else {
            return .failure(Poison(.emptyValue, "the record has no value (a tombstone or an empty message)"))
        }
        guard value.count <= maxValueBytes else {
            return .failure(Poison(.tooLarge, "the value is \(value.count) bytes, more than \(maxValueBytes)"))
        }
        let json: JSONValue
        do {
            json = try WireFormat.decode(JSONValue.self, from: value)
        } catch {
            return .failure(Poison(.notJSON, "the value is not valid JSON"))
        }
        guard case .object(let object) = json else {
            return .failure(Poison(.notObject, "the value is JSON but not an object"))
        }
        do {
            return .success(try decode(object: object, key: key, now: now))
        } catch let poison as Poison {
            return .failure(poison)
        } catch {
            return .failure(Poison(.wrongFieldType, "\(error)"))
        }
    }

    private func decode(object: [String: JSONValue], key: [UInt8]?, now: Date) throws -> SyncJob {
        let type = try string(object, "type")
        guard type == "sync" else {
            throw Poison(.unsupportedType, "\"type\" is \"\(type.prefix(40))\", expected \"sync\"")
        }
        let jobId = try string(object, "jobId")
        guard !jobId.isEmpty else { throw Poison(.emptyJobId, "\"jobId\" is empty") }
        let accountId = try string(object, "accountId")
        guard !accountId.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw Poison(.emptyAccountId, "\"accountId\" is empty")
        }
        let keyText = key.map { String(decoding: $0, as: UTF8.self) }
        guard keyText == accountId else {
            let shown = keyText.map { "\"\($0.prefix(60))\"" } ?? "missing"
            throw Poison(
                .keyMismatch, "the record key (\(shown)) is not the job's accountId \"\(accountId.prefix(60))\"")
        }
        let integration = try string(object, "integration")
        guard integrations.contains(integration) else {
            let known = integrations.sorted().joined(separator: ", ")
            throw Poison(.unknownIntegration, "integration \"\(integration.prefix(40))\" is not one of [\(known)]")
        }
        let scheduledText = try string(object, "scheduledAt")
        guard let scheduledAt = WireFormat.parseDate(scheduledText) else {
            throw Poison(.wrongFieldType, "\"scheduledAt\" is not an RFC 3339 date")
        }
        guard scheduledAt.timeIntervalSince(now) <= maxFutureSkew, now.timeIntervalSince(scheduledAt) <= maxAge else {
            throw Poison(
                .scheduledAtOutOfRange,
                "\"scheduledAt\" \(scheduledText.prefix(40)) is more than a day ahead or a year behind the worker's clock"
            )
        }
        // Optional for producers that are not ours: a job is its first attempt unless it says otherwise.
        let attemptValue = object["attempt"] ?? .number(1)
        guard let attempt = attemptValue.intValue else {
            throw Poison(.wrongFieldType, "\"attempt\" must be an integer")
        }
        guard attempt >= 1 else { throw Poison(.invalidAttempt, "\"attempt\" is \(attempt), must be at least 1") }
        var since: Date?
        if let sinceValue = object["since"], sinceValue != .null {
            guard let text = sinceValue.stringValue, let date = WireFormat.parseDate(text) else {
                throw Poison(.wrongFieldType, "\"since\" must be an RFC 3339 date")
            }
            since = date
        }
        // A `sealedConfig` (jobs written before jobs stopped carrying secrets) is not read: the worker runs every job
        // with the account's current record from the accounts topic.
        return SyncJob(
            accountId: accountId, integration: integration, scheduledAt: scheduledAt, attempt: attempt, since: since,
            jobId: jobId)
    }

    private func string(_ object: [String: JSONValue], _ field: String, in prefix: String = "") throws -> String {
        guard let value = object[field] else { throw Poison(.missingField, "\"\(prefix)\(field)\" is missing") }
        guard let text = value.stringValue else {
            throw Poison(.wrongFieldType, "\"\(prefix)\(field)\" must be a string")
        }
        return text
    }
}
