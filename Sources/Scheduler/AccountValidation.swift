public import Cron
import Foundation
public import Sealing
public import SyncModel

/// Turns an accounts-topic record into something the scheduler can act on, or says why it cannot.
///
/// The checks are structural: the scheduler fires sealed configs and never needs the tokens. With a sealer it
/// also confirms the config can be unsealed, so a record sealed under a key the workers lack is reported at the
/// scheduler rather than failing every job later.
public struct AccountValidator: Sendable {
    /// Integration keys jobs may name (a worker has no use for a job for an unknown integration).
    public var knownIntegrations: Set<String>
    /// When set, records must be unsealable with these keys.
    public var sealer: Sealer?

    public init(knownIntegrations: Set<String> = ["github"], sealer: Sealer? = nil) {
        self.knownIntegrations = knownIntegrations
        self.sealer = sealer
    }

    /// What a record on the accounts topic means.
    public enum Outcome: Sendable {
        case upsert(AccountRecord, CronExpression)
        case remove(accountId: String)
        /// Not usable; `reason` says why, for the log. `accountId` is the record key when there was one.
        case invalid(accountId: String?, reason: String)
    }

    /// Classifies one record (key and value as on the topic).
    public func validate(key: [UInt8]?, value: [UInt8]?) -> Outcome {
        let keyText = key.map { String(decoding: $0, as: UTF8.self) }
        guard let value else {
            guard let keyText, !keyText.isEmpty else {
                return .invalid(accountId: nil, reason: "tombstone without a key")
            }
            return .remove(accountId: keyText)
        }
        let record: AccountRecord
        do {
            record = try AccountRecord.decodeMessage(value)
        } catch let error as DecodingError {
            return .invalid(accountId: keyText, reason: "not an account record: \(Self.describe(error))")
        } catch {
            return .invalid(accountId: keyText, reason: "not an account record: \(error)")
        }
        return validate(record, key: keyText)
    }

    /// Checks a decoded record; `key` is the record key, which must equal the account id when present.
    public func validate(_ record: AccountRecord, key: String?) -> Outcome {
        let id = record.accountId
        guard !id.isEmpty else { return .invalid(accountId: key, reason: "accountId is empty") }
        if let key, key != id {
            return .invalid(accountId: key, reason: "record key '\(key)' differs from accountId '\(id)'")
        }
        guard knownIntegrations.contains(record.integration) else {
            return .invalid(
                accountId: id,
                reason: "unknown integration '\(record.integration)' (known: "
                    + "\(knownIntegrations.sorted().joined(separator: ", ")))")
        }
        let expression: CronExpression
        do {
            expression = try CronExpression(record.settings.schedule.frequency)
        } catch {
            return .invalid(accountId: id, reason: "bad schedule: \(error)")
        }
        let sealed = record.sealedConfig
        guard !sealed.keyId.isEmpty, !sealed.ciphertext.isEmpty else {
            return .invalid(accountId: id, reason: "sealed config (the tokens) is missing")
        }
        guard sealed.ciphertext.utf8.count <= SchedulingCore.maxCiphertextBytes else {
            return .invalid(
                accountId: id,
                reason: "sealed config is \(sealed.ciphertext.utf8.count) bytes, over the "
                    + "\(SchedulingCore.maxCiphertextBytes)-byte limit")
        }
        guard let bytes = Data(base64Encoded: sealed.ciphertext), bytes.count > 28 else {
            return .invalid(accountId: id, reason: "sealed config is not base64 of nonce, ciphertext and tag")
        }
        if let sealer {
            guard sealer.canUnseal(keyId: sealed.keyId) else {
                return .invalid(
                    accountId: id,
                    reason: "account sealed with key id \(sealed.keyId) which this process does not have; add it "
                        + "to the key file")
            }
            do {
                let config = try sealer.unseal(sealed)
                guard config.objectValue.map({ !$0.isEmpty }) == true else {
                    return .invalid(accountId: id, reason: "sealed config is empty: no token")
                }
            } catch {
                return .invalid(accountId: id, reason: "\(error)")
            }
        }
        return .upsert(record, expression)
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context):
            return context.underlyingError.map { "invalid JSON (\($0.localizedDescription))" }
                ?? "invalid JSON (\(context.debugDescription))"
        case .keyNotFound(let key, let context):
            return "missing field '\((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return
                "field '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
