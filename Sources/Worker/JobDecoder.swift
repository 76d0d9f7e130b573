public import Foundation
public import SyncModel

/// Why a job went to the dead-letter topic. The raw value is the `dlq_code` header, stable for dashboards.
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

/// Opens (and re-seals) integration configs. The worker needs only these two operations of the Sealing module,
/// so it depends on this seam, and tests can use a fake.
public protocol ConfigSealer: Sendable {
    /// Whether a key with this id is loaded; a job sealed under an unknown key is a poison job, not a crash.
    func hasKey(id: String) -> Bool
    /// Decrypts and authenticates a sealed config. Throws when the ciphertext was tampered with.
    func open(_ sealed: SealedConfig) throws -> JSONValue
    /// Seals a config under the current key (for a refreshed token pair).
    func seal(_ config: JSONValue) throws -> SealedConfig
}

/// Turns the bytes of a jobs-topic record into a `SyncJob`, or says precisely why they are poison.
///
/// The checks are done field by field on the parsed JSON rather than by `Codable`, so the dead-letter reason
/// names the field an operator must fix.
public struct JobDecoder: Sendable {
    /// The integration keys this worker can run.
    public var integrations: Set<String>
    /// Larger values are refused before parsing; a real job is well under a kilobyte.
    public var maxValueBytes = 1 << 20
    /// How far in the future `scheduledAt` may lie (clock skew between scheduler and worker).
    public var maxFutureSkew: TimeInterval = 24 * 3600
    /// How far in the past `scheduledAt` may lie before it is considered corrupt rather than late.
    public var maxAge: TimeInterval = 365 * 24 * 3600
    public var supportedAlgorithms: Set<String> = ["AES-256-GCM"]

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
            throw Poison(.keyMismatch, "the record key (\(shown)) is not the job's accountId \"\(accountId.prefix(60))\"")
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
                "\"scheduledAt\" \(scheduledText.prefix(40)) is more than a day ahead or a year behind the worker's clock")
        }
        guard let attemptValue = object["attempt"] else { throw Poison(.missingField, "\"attempt\" is missing") }
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
        guard let sealedValue = object["sealedConfig"] else {
            throw Poison(.missingField, "\"sealedConfig\" is missing")
        }
        guard case .object(let sealedObject) = sealedValue else {
            throw Poison(.wrongFieldType, "\"sealedConfig\" must be an object")
        }
        let sealed = SealedConfig(
            keyId: try string(sealedObject, "keyId", in: "sealedConfig."),
            algorithm: try string(sealedObject, "algorithm", in: "sealedConfig."),
            ciphertext: try string(sealedObject, "ciphertext", in: "sealedConfig."))
        guard supportedAlgorithms.contains(sealed.algorithm) else {
            throw Poison(.unsupportedAlgorithm, "sealing algorithm \"\(sealed.algorithm.prefix(40))\" is not supported")
        }
        return SyncJob(
            accountId: accountId, integration: integration, scheduledAt: scheduledAt, attempt: attempt, since: since,
            sealedConfig: sealed, jobId: jobId)
    }

    private func string(_ object: [String: JSONValue], _ field: String, in prefix: String = "") throws -> String {
        guard let value = object[field] else { throw Poison(.missingField, "\"\(prefix)\(field)\" is missing") }
        guard let text = value.stringValue else {
            throw Poison(.wrongFieldType, "\"\(prefix)\(field)\" must be a string")
        }
        return text
    }

    /// Unseals a job's config and checks it carries a token.
    ///
    /// - Important: the error never contains plaintext: a tampered ciphertext says so without echoing it.
    public static func open(_ sealed: SealedConfig, with sealer: any ConfigSealer) -> Result<JSONValue, Poison> {
        guard sealer.hasKey(id: sealed.keyId) else {
            return .failure(
                Poison(
                    .unknownSealingKey,
                    "sealed under key id \"\(sealed.keyId.prefix(40))\", which this worker does not have: "
                        + "load that key or re-seal the account"))
        }
        let config: JSONValue
        do {
            config = try sealer.open(sealed)
        } catch {
            return .failure(
                Poison(.unsealFailed, "the sealed config did not authenticate under key \"\(sealed.keyId)\" (tampered?)"))
        }
        guard case .object(let object) = config else {
            return .failure(Poison(.configNotObject, "the unsealed config is not a JSON object"))
        }
        guard let token = object["access_token"]?.stringValue, !token.isEmpty else {
            return .failure(Poison(.configMissingAccessToken, "the unsealed config has no access_token"))
        }
        return .success(config)
    }
}
