import Accounts
import ArgumentParser
import Cron
import Foundation
import Kafka
import Sealing
import SyncModel
import Logging

extension CommonOptions {
    /// The accounts-topic client of the `accounts` and `enqueue` commands, logging warnings and worse by default.
    func accountsClient() throws -> AccountsTopicClient {
        let logger = bootstrapLogging("activity-sync.accounts", defaultLevel: .warning)
        return AccountsTopicClient(kafka: try kafka(), topics: topics, logger: logger)
    }
}

/// `activity-sync accounts …`: the accounts topic by hand. Tokens are sealed before they leave this process and
/// are never printed.
struct AccountsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accounts",
        abstract: "Add, import, list, show, pause, resume, remove and resync accounts on the accounts topic.",
        subcommands: [
            AddAccount.self, ImportAccounts.self, ListAccounts.self, ShowAccount.self, PauseAccounts.self,
            ResumeAccounts.self, RemoveAccount.self, ResyncAccount.self, SetupAccount.self,
        ]
    )
}

struct AddAccount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Add or replace an account; its tokens are sealed with the sealing key.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var sealing: SealingKeyOptions
    @Option(help: "Account id (the record key).") var id: String
    @Option(help: "Integration key.") var integration = "github"
    @Option(help: "File holding the access token.") var tokenFile: String
    @Option(help: "File holding the refresh token, if the account has one.") var refreshTokenFile: String?
    @Option(help: "Cron schedule (5 fields, or 6 with seconds).") var schedule = "*/5 * * * *"
    @Option(help: "The account's username on the integration.") var username: String?
    @Flag(help: "Add the account disabled (not scheduled).") var disabled = false

    func run() async throws {
        do {
            _ = try CronExpression(schedule)
        } catch {
            throw ValidationError("--schedule: \(error)")
        }
        let sealer = try sealing.requiredSealer()
        let token = try readSecret(tokenFile, option: "--token-file")
        var config: [String: JSONValue] = [
            "access_token": .string(token), "mcp": ["tokens": ["access_token": .string(token)]],
        ]
        if let refreshTokenFile {
            config["refresh_token"] = .string(try readSecret(refreshTokenFile, option: "--refresh-token-file"))
        }
        let record = AccountRecord(
            accountId: id, integration: integration,
            settings: AccountSettings(username: username, frequency: schedule, enabled: !disabled),
            sealedConfig: try sealer.seal(.object(config)), updatedAt: Date())
        let client = try options.accountsClient()
        try await client.put(record)
        print("added account \(id) (\(integration), schedule '\(schedule)', sealed with key \(sealer.current.id))")
    }
}

/// The text of the file at `path`, or of standard input for `-`; `name` is how an error names it.
func readInput(_ path: String, named name: String) throws -> String {
    if path == "-" { return String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) }
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("\(name) cannot be read")
    }
    return text
}

private func readSecret(_ path: String, option: String) throws -> String {
    let secret = try readInput(path, named: "\(option) \(path)").trimmingCharacters(in: .whitespacesAndNewlines)
    guard !secret.isEmpty else { throw ValidationError("\(option) \(path) is empty") }
    return secret
}

struct ImportAccounts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import the `account` messages `integration … setup` prints (one JSON per line), sealing configs.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var sealing: SealingKeyOptions
    @Option(help: "Integration key of the imported accounts.") var integration = "github"
    @Argument(help: "File of JSON lines, or - for stdin.") var file: String

    func run() async throws {
        let sealer = try sealing.requiredSealer()
        let text = try readInput(file, named: file)
        var records: [AccountRecord] = []
        for (number, line) in text.split(separator: "\n").enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let envelope: Envelope<AccountSetup>
            do {
                envelope = try WireFormat.decode(Envelope<AccountSetup>.self, from: Array(trimmed.utf8))
            } catch {
                // Other messages (spec, logs) may be interleaved; only `account` messages are imported.
                continue
            }
            guard envelope.type == "account" else { continue }
            let setup = envelope.data
            do {
                records.append(
                    try accountRecord(
                        setup, integration: setup.settings["integration"]?.stringValue ?? integration,
                        defaultFrequency: nil, sealer: sealer))
            } catch let error as ValidationError {
                throw ValidationError("line \(number + 1), \(error.message)")
            }
        }
        guard !records.isEmpty else { throw ValidationError("no `account` messages found in \(file)") }
        let client = try options.accountsClient()
        try await client.put(records)
        print(
            "imported \(records.count) account\(records.count == 1 ? "" : "s") (sealed with key \(sealer.current.id))")
    }
}

struct ListAccounts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List accounts (never their tokens).")

    @OptionGroup var options: CommonOptions
    @Flag(help: "One JSON object per line instead of a table.") var json = false

    func run() async throws {
        let client = try options.accountsClient()
        let snapshot = try await client.readAll()
        let accounts = snapshot.accounts.values.sorted { $0.accountId < $1.accountId }
        if json {
            for account in accounts {
                let row: JSONValue = [
                    "accountId": .string(account.accountId), "integration": .string(account.integration),
                    "username": account.settings.username.map(JSONValue.string) ?? .null,
                    "schedule": .string(account.settings.schedule.frequency),
                    "enabled": .bool(account.settings.enabled), "keyId": .string(account.sealedConfig.keyId),
                ]
                print(String(decoding: try WireFormat.encode(row), as: UTF8.self))
            }
        } else {
            let header = ["ID", "INTEGRATION", "USERNAME", "SCHEDULE", "ENABLED", "KEY ID"]
            let rows = accounts.map {
                [
                    $0.accountId, $0.integration, $0.settings.username ?? "-", $0.settings.schedule.frequency,
                    $0.settings.enabled ? "yes" : "no", $0.sealedConfig.keyId,
                ]
            }
            printTable(header: header, rows: rows)
        }
        for (id, reason) in snapshot.invalid {
            FileHandle.standardError.write(Data("unreadable record for \(id ?? "?"): \(reason)\n".utf8))
        }
    }
}

struct ShowAccount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "One account: settings and next ticks, status, state and its last runs (never its token).",
        discussion: """
            Reads the account's partition of the accounts, status, state and runs topics; no sealing key needed. \
            Exits 1 when the account is not on the accounts topic.
            """)

    @OptionGroup var options: CommonOptions
    @Argument(help: "Account id.") var id: String
    @Option(help: "How many of the newest run records to show.") var runs = 10
    @Flag(help: "One JSON object instead of text.") var json = false

    func run() async throws {
        let client = try options.accountsClient()
        guard let overview = try await client.overview(of: id, runs: runs) else {
            FileHandle.standardError.write(Data("Error: account \(id) is not on \(client.topics.accounts)\n".utf8))
            throw ExitCode(1)
        }
        let account = overview.account
        if json {
            var object: [String: JSONValue] = [
                "accountId": .string(account.accountId), "integration": .string(account.integration),
                "username": account.settings.username.map(JSONValue.string) ?? .null,
                "schedule": .string(account.settings.schedule.frequency), "enabled": .bool(account.settings.enabled),
                "keyId": .string(account.sealedConfig.keyId),
                "updatedAt": .string(WireFormat.formatDate(account.updatedAt)),
                "paused": try account.settings.paused.map { try JSONValue(encoding: $0) } ?? .null,
                "nextTicks": .array(overview.nextTicks.map { .string(WireFormat.formatDate($0)) }),
                "accountVersion": overview.version.map { .string($0.description) } ?? .null,
                "heldForReauth": .bool(overview.isHeldForReauth),
            ]
            object["status"] = try overview.status.map { try JSONValue(encoding: $0) } ?? .null
            if let state = overview.state {
                object["state"] = [
                    "updatedAt": .string(WireFormat.formatDate(state.updatedAt)),
                    "lastJob": try state.lastJob.map { try JSONValue(encoding: $0) } ?? .null,
                    "refreshedCredentials": .bool(state.credentials?.refreshed != nil),
                    "rejectedCredentials": .bool(state.credentials?.rejected == true),
                    "failures": try state.failures.map { try JSONValue(encoding: $0) } ?? .null,
                    "data": Self.summary(of: state.data),
                ]
            } else {
                object["state"] = .null
            }
            object["runs"] = .array(try overview.runs.map { try JSONValue(encoding: $0) })
            print(String(decoding: try WireFormat.encode(JSONValue.object(object)), as: UTF8.self))
            return
        }
        var lines = [
            "account      \(account.accountId) (\(account.integration)\(account.settings.username.map { ", \($0)" } ?? ""))",
            "schedule     \(account.settings.schedule.frequency)\(account.settings.enabled ? "" : " (disabled)")"
                + (account.settings.paused.map {
                    " (paused, \($0.reason.rawValue), since \(WireFormat.formatDate($0.at))\($0.note.map { ": \($0)" } ?? ""))"
                } ?? "")
                + "; next: \(overview.nextTicks.map(WireFormat.formatDate).joined(separator: ", "))",
            "record       updated \(WireFormat.formatDate(account.updatedAt)), sealed with key \(account.sealedConfig.keyId)"
                + (overview.version.map { ", version \($0)" } ?? ""),
        ]
        if let status = overview.status {
            lines.append(
                "status       \(status.status.rawValue) at \(WireFormat.formatDate(status.at))"
                    + (status.reason.map { ": \($0)" } ?? ""))
            if overview.isHeldForReauth {
                lines.append(
                    "             no jobs until the account is reconnected (accounts add or import with new tokens)")
            }
        } else {
            lines.append("status       none yet")
        }
        if let state = overview.state {
            let last = state.lastJob.map { "last tick \(WireFormat.formatDate($0.scheduledAt))" } ?? "no tick yet"
            let pair = state.credentials?.refreshed != nil ? "; a refreshed token pair is stored" : ""
            lines.append("state        \(last), updated \(WireFormat.formatDate(state.updatedAt))\(pair)")
            if let failures = state.failures {
                lines.append(
                    "failures     \(failures.count) in a row since \(WireFormat.formatDate(failures.since)), last "
                        + "\(WireFormat.formatDate(failures.last)) (backing off; a week of them pauses the account)")
            }
            if case .object(let fields) = Self.summary(of: state.data), !fields.isEmpty {
                for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
                    lines.append(
                        "             \(key) \(value.stringValue ?? String(decoding: (try? WireFormat.encode(value)) ?? [], as: UTF8.self))"
                    )
                }
            }
        } else {
            lines.append("state        none yet (never synced)")
        }
        print(lines.joined(separator: "\n"))
        print("")
        let header = ["SCHEDULED", "OUTCOME", "ACTIVITIES", "STARTED", "SECONDS", "REASON"]
        let rows = overview.runs.map { run in
            [
                run.scheduledAt.map(WireFormat.formatDate) ?? "-", run.outcome.rawValue, String(run.activities),
                WireFormat.formatDate(run.startedAt),
                String(format: "%.1f", run.finishedAt.timeIntervalSince(run.startedAt)),
                String((run.reason ?? "").prefix(80)),
            ]
        }
        printTable(header: header, rows: rows)
    }

    /// The state's top-level strings, numbers and booleans (watermarks, usernames, validators' dates): what says how
    /// far the account has been read, without its id lists.
    static func summary(of data: JSONValue) -> JSONValue {
        guard case .object(let fields) = data else { return [:] }
        return .object(
            fields.filter {
                switch $0.value {
                case .string, .number, .bool: true
                default: false
                }
            })
    }
}

/// The accounts `pause` and `resume` act on.
struct PauseTarget: ParsableArguments {
    @Argument(help: "Account ids.") var ids: [String] = []
    @Option(help: "Every account of this integration instead.") var integration: String?

    func validate() throws {
        guard ids.isEmpty != (integration == nil) else {
            throw ValidationError("give account ids or --integration KEY, not both and not neither")
        }
    }

    var selection: AccountsTopicClient.PauseSelection {
        integration.map { .integration($0) } ?? .accounts(ids)
    }
}

struct PauseAccounts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause",
        abstract:
            "Pause accounts (no sealing key needed): no jobs are fired for them, and jobs that still arrive are skipped.",
        discussion: "Exits 1 when an id is not on the accounts topic (the others are still paused).")

    @OptionGroup var options: CommonOptions
    @OptionGroup var target: PauseTarget
    @Option(help: "Why, shown by accounts show and in the skipped jobs' run records.") var note: String?

    func run() async throws {
        let client = try options.accountsClient()
        let (changed, unknown) = try await client.pause(target.selection, note: note)
        for id in changed { print("paused account \(id)") }
        try reportUnknown(unknown, client: client)
    }
}

struct ResumeAccounts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Resume paused accounts: their next tick fires again.",
        discussion: "Exits 1 when an id is not on the accounts topic (the others are still resumed).")

    @OptionGroup var options: CommonOptions
    @OptionGroup var target: PauseTarget

    func run() async throws {
        let client = try options.accountsClient()
        let (changed, unknown) = try await client.resume(target.selection)
        for id in changed { print("resumed account \(id)") }
        try reportUnknown(unknown, client: client)
    }
}

private func reportUnknown(_ unknown: [String], client: AccountsTopicClient) throws {
    guard !unknown.isEmpty else { return }
    let error = AccountsError.unknownAccounts(unknown, topic: client.topics.accounts)
    FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
    throw ExitCode(1)
}

struct RemoveAccount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove an account (tombstone); schedulers stop firing it by its next tick.")

    @OptionGroup var options: CommonOptions
    @Argument(help: "Account id.") var id: String

    func run() async throws {
        let client = try options.accountsClient()
        try await client.remove(accountId: id)
        print("removed account \(id)")
    }
}

struct ResyncAccount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resync",
        abstract: "Publish a one-off job that re-reads an account from a time; activities keep their stable ids.")

    @OptionGroup var options: CommonOptions
    @Argument(help: "Account id.") var id: String
    @Option(help: "Re-read from this time (ISO-8601, e.g. 2026-11-30T00:00:00Z).") var since: String

    func run() async throws {
        guard let sinceDate = WireFormat.parseDate(since) else {
            throw ValidationError("--since '\(since)' is not an ISO-8601 time such as 2026-11-30T00:00:00Z")
        }
        let job = try await options.accountsClient().resync(accountId: id, since: sinceDate)
        print("published job \(job.jobId) (since \(WireFormat.formatDate(sinceDate)))")
    }
}

/// The account record for an SDK `account` message (`accounts import`, `accounts setup`, dev mode): the config
/// sealed, the schedule from the account's settings, else `defaultFrequency` (an integration spec's), else `*/5`.
func accountRecord(
    _ setup: AccountSetup, integration: String, defaultFrequency: String?, sealer: Sealer
) throws -> AccountRecord {
    let frequency = setup.settings["schedule"]?["frequency"]?.stringValue ?? defaultFrequency ?? "*/5 * * * *"
    do {
        _ = try CronExpression(frequency)
    } catch {
        throw ValidationError("account \(setup.accountId): schedule '\(frequency)': \(error)")
    }
    return AccountRecord(
        accountId: setup.accountId, integration: integration,
        settings: AccountSettings(
            username: setup.settings["username"]?.stringValue, frequency: frequency,
            enabled: setup.settings["enabled"]?.boolValue ?? true),
        sealedConfig: try sealer.seal(setup.config), updatedAt: Date())
}
