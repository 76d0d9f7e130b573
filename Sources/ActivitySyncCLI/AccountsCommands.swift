import ArgumentParser
import Cron
import Foundation
import Kafka
import Logging
import Scheduler
import Sealing
import SyncModel

/// `--bootstrap` (or `ACTIVITY_SYNC_BOOTSTRAP`) and the topic prefix, shared by the scheduler-side commands.
struct SchedulerKafkaOptions: ParsableArguments {
    @Option(help: "Kafka bootstrap servers (host:port,…); default: $ACTIVITY_SYNC_BOOTSTRAP.")
    var bootstrap: String?

    @Option(help: "Prefix of activity-sync's topic names.")
    var topicPrefix = "activity-sync"

    func kafka(clientId: String = "activity-sync") throws -> KafkaConfiguration {
        guard let servers = bootstrap ?? ProcessInfo.processInfo.environment["ACTIVITY_SYNC_BOOTSTRAP"],
            !servers.isEmpty
        else {
            throw ValidationError(
                "no Kafka bootstrap servers: pass --bootstrap host:port or set ACTIVITY_SYNC_BOOTSTRAP")
        }
        return KafkaConfiguration(bootstrapServers: servers, clientId: clientId)
    }

    var topics: TopicNames { TopicNames(prefix: topicPrefix) }
}

private let sealingKeyFileHelp =
    "File with the sealing key(s): base64 of 32 bytes, or `id:base64` lines (first = current); "
    + "default: $ACTIVITY_SYNC_SEALING_KEY_FILE."

/// `--sealing-key-file` (or `ACTIVITY_SYNC_SEALING_KEY_FILE`).
struct SealingKeyOptions: ParsableArguments {
    @Option(help: ArgumentHelp(sealingKeyFileHelp))
    var sealingKeyFile: String?

    func sealer(required: Bool) throws -> Sealer? {
        let sealer = try Sealer.load(keyFile: sealingKeyFile)
        if required && sealer == nil {
            throw ValidationError(
                "no sealing key: pass --sealing-key-file F or set ACTIVITY_SYNC_SEALING_KEY_FILE (generate a key "
                    + "with `head -c 32 /dev/urandom | base64 > F`)")
        }
        return sealer
    }
}

func commandLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .warning
    return logger
}

/// `activity-sync accounts …`: the accounts topic by hand. Tokens are sealed before they leave this process and
/// are never printed.
struct AccountsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accounts",
        abstract: "Add, import, list, remove and resync accounts on the accounts topic.",
        subcommands: [
            AddAccount.self, ImportAccounts.self, ListAccounts.self, RemoveAccount.self, ResyncAccount.self,
            SetupAccount.self,
        ]
    )
}

struct AddAccount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Add or replace an account; its tokens are sealed with the sealing key.")

    @OptionGroup var kafka: SchedulerKafkaOptions
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
        let sealer = try sealing.sealer(required: true)!
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
        let client = AccountsTopicClient(
            kafka: try kafka.kafka(), topics: kafka.topics, logger: commandLogger("accounts"))
        try await client.put(record)
        print("added account \(id) (\(integration), schedule '\(schedule)', sealed with key \(sealer.current.id))")
    }
}

private func readSecret(_ path: String, option: String) throws -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("\(option) \(path) cannot be read")
    }
    let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !secret.isEmpty else { throw ValidationError("\(option) \(path) is empty") }
    return secret
}

struct ImportAccounts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import the `account` messages `integration … setup` prints (one JSON per line), sealing configs.")

    @OptionGroup var kafka: SchedulerKafkaOptions
    @OptionGroup var sealing: SealingKeyOptions
    @Option(help: "Integration key of the imported accounts.") var integration = "github"
    @Argument(help: "File of JSON lines, or - for stdin.") var file: String

    func run() async throws {
        let sealer = try sealing.sealer(required: true)!
        let text: String
        if file == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("\(file) cannot be read")
            }
            text = contents
        }
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
            let settings = setup.settings
            let frequency = settings["schedule"]?["frequency"]?.stringValue ?? "*/5 * * * *"
            do {
                _ = try CronExpression(frequency)
            } catch {
                throw ValidationError("line \(number + 1), account \(setup.accountId): schedule: \(error)")
            }
            records.append(
                AccountRecord(
                    accountId: setup.accountId, integration: settings["integration"]?.stringValue ?? integration,
                    settings: AccountSettings(
                        username: settings["username"]?.stringValue, frequency: frequency,
                        enabled: settings["enabled"]?.boolValue ?? true),
                    sealedConfig: try sealer.seal(setup.config), updatedAt: Date()))
        }
        guard !records.isEmpty else { throw ValidationError("no `account` messages found in \(file)") }
        let client = AccountsTopicClient(
            kafka: try kafka.kafka(), topics: kafka.topics, logger: commandLogger("accounts"))
        try await client.put(records)
        print(
            "imported \(records.count) account\(records.count == 1 ? "" : "s") (sealed with key \(sealer.current.id))")
    }
}

struct ListAccounts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List accounts (never their tokens).")

    @OptionGroup var kafka: SchedulerKafkaOptions
    @Flag(help: "One JSON object per line instead of a table.") var json = false

    func run() async throws {
        let client = AccountsTopicClient(
            kafka: try kafka.kafka(), topics: kafka.topics, logger: commandLogger("accounts"))
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

struct RemoveAccount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove an account (tombstone); schedulers stop firing it by its next tick.")

    @OptionGroup var kafka: SchedulerKafkaOptions
    @Argument(help: "Account id.") var id: String

    func run() async throws {
        let client = AccountsTopicClient(
            kafka: try kafka.kafka(), topics: kafka.topics, logger: commandLogger("accounts"))
        try await client.remove(accountId: id)
        print("removed account \(id)")
    }
}

struct ResyncAccount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resync",
        abstract: "Publish a one-off job that re-reads an account from a time; activities keep their stable ids.")

    @OptionGroup var kafka: SchedulerKafkaOptions
    @Argument(help: "Account id.") var id: String
    @Option(help: "Re-read from this time (ISO-8601, e.g. 2026-11-30T00:00:00Z).") var since: String

    func run() async throws {
        guard let sinceDate = WireFormat.parseDate(since) else {
            throw ValidationError("--since '\(since)' is not an ISO-8601 time such as 2026-11-30T00:00:00Z")
        }
        let job = try await enqueueJob(kafka: kafka, accountId: id, since: sinceDate)
        print("published job \(job.jobId) (since \(WireFormat.formatDate(sinceDate)))")
    }
}

/// Looks the account up on the accounts topic and publishes a job for it: for `enqueue` the job of its latest
/// tick, for `resync` a one-off job scheduled now.
func enqueueJob(kafka options: SchedulerKafkaOptions, accountId: String, since: Date?) async throws -> SyncJob {
    let client = AccountsTopicClient(
        kafka: try options.kafka(), topics: options.topics, logger: commandLogger("accounts"))
    let snapshot = try await client.readAll()
    guard let account = snapshot.accounts[accountId] else {
        throw SchedulerError.unknownAccount(accountId, topic: options.topics.accounts)
    }
    let now: Date
    if since == nil, let expression = try? CronExpression(account.settings.schedule.frequency),
        let tick = SchedulingCore.latestTick(expression, atOrBefore: Int64(Date().timeIntervalSince1970))
    {
        // `enqueue` stands in for the scheduler: the job of the account's latest tick, with the scheduler's id,
        // so a repeat (or a scheduler that also fired it) is recognised as the same job.
        now = Date(timeIntervalSince1970: TimeInterval(tick))
    } else {
        // A resync is its own job: milliseconds, never a whole second, so its id can never equal a tick's id
        // (which a worker would take for a duplicate fire and skip).
        var millis = (Date().timeIntervalSince1970 * 1000).rounded(.down)
        if millis.truncatingRemainder(dividingBy: 1000) == 0 { millis += 1 }
        now = Date(timeIntervalSince1970: millis / 1000)
    }
    let job = SyncJob(
        accountId: account.accountId, integration: account.integration, scheduledAt: now, since: since,
        sealedConfig: account.sealedConfig)
    try await client.enqueue(job)
    return job
}
