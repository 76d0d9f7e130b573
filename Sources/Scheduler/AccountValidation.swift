public import Cron
import Foundation
public import SyncModel

/// Turns an accounts-topic record into something the scheduler can act on, or says why it cannot.
///
/// Only what scheduling needs is read and checked: the account id (equal to the record key), a known
/// integration, a cron schedule that parses, and `enabled`. The sealed config is not read at all — jobs carry
/// none, and a worker reads the account's current record when it runs a job — so a missing, malformed or
/// unopenable config is the worker's to report (it dead-letters the job), and the scheduler needs no sealing key.
public struct AccountValidator: Sendable {
    /// Integration keys jobs may name (a worker has no use for a job for an unknown integration).
    public var knownIntegrations: Set<String>

    public init(knownIntegrations: Set<String>) {
        self.knownIntegrations = knownIntegrations
    }

    /// What a record on the accounts topic means.
    public enum Outcome: Sendable {
        case upsert(AccountSchedule)
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
        let message: ScheduleFields
        do {
            message = try WireFormat.decode(ScheduleFields.self, from: value)
        } catch let error as DecodingError {
            return .invalid(accountId: keyText, reason: "not an account record: \(Self.describe(error))")
        } catch {
            return .invalid(accountId: keyText, reason: "not an account record: \(error)")
        }
        guard message.type == "account" else {
            let error = RecordError.wrongType(expected: "account", found: message.type)
            return .invalid(accountId: keyText, reason: "not an account record: \(error)")
        }
        let data = message.data
        let id = data.accountId
        guard !id.isEmpty else { return .invalid(accountId: keyText, reason: "accountId is empty") }
        if let keyText, keyText != id {
            return .invalid(accountId: keyText, reason: "record key '\(keyText)' differs from accountId '\(id)'")
        }
        guard knownIntegrations.contains(data.integration) else {
            return .invalid(
                accountId: id,
                reason: "unknown integration '\(data.integration)' (known: "
                    + "\(knownIntegrations.sorted().joined(separator: ", ")))")
        }
        let expression: CronExpression
        do {
            expression = try CronExpression(data.settings.schedule.frequency)
        } catch {
            return .invalid(accountId: id, reason: "bad schedule: \(error)")
        }
        return .upsert(
            AccountSchedule(
                accountId: id, integration: data.integration, schedule: expression,
                enabled: data.settings.enabled && data.settings.paused == nil, paused: data.settings.paused != nil,
                version: AccountVersion(recordBytes: value)))
    }

    /// The fields of `{"type":"account","data":{…}}` the scheduler reads; the decoder skips the rest (the sealed
    /// config's strings are never built).
    private struct ScheduleFields: Decodable {
        struct Account: Decodable {
            struct Settings: Decodable {
                struct Schedule: Decodable { var frequency: String }
                /// Only whether it is there: a paused account is scheduled like a disabled one.
                struct Paused: Decodable {}
                var schedule: Schedule
                var enabled: Bool
                var paused: Paused?
            }
            var accountId: String
            var integration: String
            var settings: Settings
        }
        var type: String
        var data: Account
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

/// A schedulable account as read from its record: what the scheduler keeps of it, no secret.
public struct AccountSchedule: Sendable, Hashable {
    public var accountId: String
    public var integration: String
    public var schedule: CronExpression
    /// `settings.enabled` and not paused: whether its ticks fire.
    public var enabled: Bool
    public var paused: Bool
    /// The version of the record's bytes, which a `needs_reauth` status names.
    public var version: AccountVersion

    public init(
        accountId: String, integration: String, schedule: CronExpression, enabled: Bool, paused: Bool = false,
        version: AccountVersion
    ) {
        self.accountId = accountId
        self.integration = integration
        self.schedule = schedule
        self.enabled = enabled
        self.paused = paused
        self.version = version
    }
}
