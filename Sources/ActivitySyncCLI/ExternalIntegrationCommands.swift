import ArgumentParser
import Cron
import ExternalIntegrations
import Foundation
import GitHub
import IntegrationCatalog
import Kafka
import Logging
import Accounts
import Sealing
import SyncModel

/// `--integrations-file` (or `ACTIVITY_SYNC_INTEGRATIONS_FILE`): the registry of external integrations.
struct ExternalIntegrationOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "JSON file of external integrations (`activity-sync integrations add` writes it); default: "
                + "$\(IntegrationManifestFile.environmentVariable); none: only the built-in github."))
    var integrationsFile: String?

    var path: String? { IntegrationManifestFile.path(option: integrationsFile) }

    /// The built-ins and this file's integrations, loaded and checked (see ``IntegrationCatalog``).
    /// - Parameter github: the built-in GitHub integration's configuration; the default where only keys and specs
    ///   are read.
    func catalog(github: GitHubConfiguration = GitHubConfiguration(), logger: Logger = quietLogger) throws
        -> IntegrationCatalog
    {
        do {
            return try IntegrationCatalog.load(
                builtIns: BuiltInIntegrations.all(github: github, logger: logger), integrationsFile: path,
                logger: logger)
        } catch let error as ExternalIntegrationError {
            throw ValidationError(error.message)
        } catch let error as IntegrationCatalogError {
            throw ValidationError(error.message)
        }
    }

    /// The keys of the integrations compiled into the binary, which no file entry may take.
    static var builtInKeys: Set<String> { Set(BuiltInIntegrations.all(logger: quietLogger).map(\.key)) }

    /// For catalogs whose integrations are listed, never run.
    static let quietLogger = Logger(label: "activity-sync.integrations", factory: { _ in SwiftLogNoOpLogHandler() })

    /// The path, or an error that says how to name one.
    func requiredPath() throws -> String {
        guard let path else {
            throw ValidationError(
                "no integrations file: pass --integrations-file F or set \(IntegrationManifestFile.environmentVariable)"
            )
        }
        return path
    }
}

/// `activity-sync integrations …`: the registry of integrations a deployment runs.
struct IntegrationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "integrations",
        abstract: "Register, list and remove external integrations (programs with the SDK's spec/setup/sync CLI).",
        subcommands: [AddIntegration.self, ListIntegrations.self, RemoveIntegration.self])
}

struct AddIntegration: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Run the program's `spec`, validate it, and record the integration in the integrations file.")

    @Argument(help: "The integration's key (its spec's key), e.g. linear.") var key: String
    @Option(help: "The program and its leading arguments, e.g. \"node /opt/integrations/linear/dist/index.js\".")
    var command: String
    @OptionGroup var file: ExternalIntegrationOptions
    @Option(name: .customLong("timeout-s"), help: "Longest run of one sync; then its process group is killed.")
    var timeoutS = IntegrationManifest.defaultTimeoutSeconds
    @Option(help: "Syncs of this integration running at once in one worker.")
    var concurrency = IntegrationManifest.defaultConcurrency
    @Option(name: .customLong("max-output-bytes"), help: "Largest stdout of one run; more kills it.")
    var maxOutputBytes = IntegrationManifest.defaultMaxOutputBytes
    @Option(
        name: .customLong("env"),
        help: "NAME=VALUE added to the program's minimal environment (repeatable; no secrets).")
    var environment: [String] = []
    @Option(help: "The program's working directory.") var workingDirectory: String?

    func run() async throws {
        let path = try file.requiredPath()
        let builtInKeys = ExternalIntegrationOptions.builtInKeys
        guard !builtInKeys.contains(key) else {
            throw ValidationError("\(key) is built in; choose another key")
        }
        var extra: [String: String] = [:]
        for entry in environment {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                throw ValidationError("--env \(entry): expected NAME=VALUE")
            }
            extra[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        do {
            try IntegrationManifest.validate(key: key)
            let words = try commandWords(command)
            let spec = try await ExternalIntegration.runSpec(
                command: words, environment: ProcessEnvironment.minimal(adding: extra))
            let manifest = IntegrationManifest(
                key: key, command: words, spec: spec, timeoutSeconds: timeoutS, concurrency: concurrency,
                maxOutputBytes: maxOutputBytes, environment: extra, workingDirectory: workingDirectory)
            try manifest.validate()
            var registry = try IntegrationManifestFile.load(
                path: path, missingIsEmpty: true, reservedKeys: builtInKeys)
            registry.upsert(manifest)
            try registry.save(path: path)
            print(
                "registered \(key) (\(spec["name"]?.stringValue ?? key), schedule '\(manifest.defaultFrequency ?? "?")') in \(path)"
            )
        } catch let error as ExternalIntegrationError {
            throw ValidationError(error.message)
        }
    }
}

struct ListIntegrations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the integrations: the built-in github and those of the integrations file.")

    @OptionGroup var file: ExternalIntegrationOptions
    @Flag(help: "One JSON object per line instead of a table.") var json = false

    func run() async throws {
        var rows: [[String: JSONValue]] = []
        let catalog = try file.catalog()
        for entry in catalog.entries {
            guard let manifest = catalog.manifest(entry.key) else {
                let spec = entry.integration.spec()
                rows.append([
                    "key": .string(entry.key), "name": spec["name"] ?? .string(entry.key), "builtIn": true,
                    "schedule": spec["schedule"]?["frequency"] ?? .null,
                ])
                continue
            }
            rows.append([
                "key": .string(manifest.key), "name": manifest.spec["name"] ?? .null, "builtIn": false,
                "schedule": manifest.defaultFrequency.map(JSONValue.string) ?? .null,
                "command": .array(manifest.command.map(JSONValue.string)),
                "timeoutSeconds": .number(Double(manifest.timeoutSeconds)),
                "concurrency": .number(Double(manifest.concurrency)),
                "maxOutputBytes": .number(Double(manifest.maxOutputBytes)),
            ])
        }
        if json {
            for row in rows { print(String(decoding: try WireFormat.encode(JSONValue.object(row)), as: UTF8.self)) }
            return
        }
        let header = ["KEY", "NAME", "SCHEDULE", "TIMEOUT", "CONCURRENCY", "COMMAND"]
        let table = rows.map { row -> [String] in
            let builtIn = row["builtIn"]?.boolValue == true
            return [
                row["key"]?.stringValue ?? "", row["name"]?.stringValue ?? "-", row["schedule"]?.stringValue ?? "-",
                builtIn ? "-" : "\(row["timeoutSeconds"]?.intValue ?? 0)s",
                builtIn ? "-" : "\(row["concurrency"]?.intValue ?? 0)",
                builtIn ? "(built in)" : (row["command"]?.arrayStrings ?? []).joined(separator: " "),
            ]
        }
        printTable(header: header, rows: table)
    }
}

struct RemoveIntegration: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Remove an integration from the integrations file (its accounts' jobs then fail as unknown).")

    @Argument(help: "The integration's key.") var key: String
    @OptionGroup var file: ExternalIntegrationOptions

    func run() async throws {
        let path = try file.requiredPath()
        do {
            var registry = try IntegrationManifestFile.load(
                path: path, reservedKeys: ExternalIntegrationOptions.builtInKeys)
            guard registry[key] != nil else { throw ValidationError("\(key) is not in \(path)") }
            registry.integrations.removeAll { $0.key == key }
            try registry.save(path: path)
            print("removed \(key) from \(path)")
        } catch let error as ExternalIntegrationError {
            throw ValidationError(error.message)
        }
    }
}

/// `activity-sync accounts setup KEY --event-body FILE`: the SDK's setup event, imported as `accounts import`
/// would import its output.
struct SetupAccount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup",
        abstract:
            "Run an external integration's `setup` with an event body and import the accounts it prints (configs sealed)."
    )

    @OptionGroup var common: CommonOptions
    @OptionGroup var sealing: SealingKeyOptions
    @OptionGroup var file: ExternalIntegrationOptions
    @Argument(help: "The integration's key in the integrations file.") var key: String
    @Option(help: "JSON file with the setup event body (e.g. the OAuth response), or - for stdin.") var eventBody:
        String

    func run() async throws {
        let client = try common.accountsClient()
        let sealer = try sealing.sealer(required: true)!
        guard let manifest = try file.catalog().manifest(key) else {
            throw ValidationError(
                "\(key) is not in the integrations file\(file.path.map { " \($0)" } ?? "")"
                    + (key == "github" ? "; for github use `integration github setup` and `accounts import`" : ""))
        }
        let data =
            eventBody == "-"
            ? FileHandle.standardInput.readDataToEndOfFile()
            : try Data(contentsOf: URL(fileURLWithPath: eventBody))
        let body: JSONValue
        do {
            body = try WireFormat.decode(JSONValue.self, from: Array(data))
        } catch {
            throw ValidationError("--event-body \(eventBody) is not JSON")
        }
        let integration = ExternalIntegration(manifest: manifest, logger: Logger(label: "activity-sync.integrations"))
        let accounts: [AccountSetup]
        do {
            accounts = try await integration.setupAccounts(eventBody: body)
        } catch let error as ExternalIntegrationError {
            throw ValidationError(error.message)
        }
        let records = try accounts.map {
            try accountRecord($0, integration: key, defaultFrequency: manifest.defaultFrequency, sealer: sealer)
        }
        try await client.put(records)
        for record in records {
            print(
                "set up account \(record.accountId) (\(key), schedule '\(record.settings.schedule.frequency)', "
                    + "sealed with key \(sealer.current.id))")
        }
    }
}

/// Columns padded to their widest cell, two spaces apart, as `accounts list` and `integrations list` print them.
func printTable(header: [String], rows: [[String]]) {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    for row in [header] + rows {
        print(
            row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
}

extension JSONValue {
    fileprivate var arrayStrings: [String]? {
        if case .array(let items) = self { return items.compactMap(\.stringValue) }
        return nil
    }
}

/// `dev --integration KEY=COMMAND`: external integrations in the demo, registered in a file of the run.
enum DevExternalIntegrations {
    /// Registers each `KEY=COMMAND` (running its `spec`), runs its `setup` with the event body, and publishes the
    /// accounts it prints on the demo's schedule.
    /// - Returns: the integrations file for the scheduler and workers, and how many accounts were added; nil
    ///   when no integration was given.
    static func register(
        _ entries: [String], eventBodyFile: String?, directory: URL, schedule: String, sealer: Sealer,
        kafka: KafkaConfiguration, topics: TopicNames, logger: Logger
    ) async throws -> (file: String, accounts: Int)? {
        guard !entries.isEmpty else { return nil }
        var body: JSONValue = [:]
        if let eventBodyFile {
            guard let data = FileManager.default.contents(atPath: eventBodyFile),
                let parsed = try? WireFormat.decode(JSONValue.self, from: Array(data))
            else { throw ValidationError("--integration-event-body \(eventBodyFile) is not a readable JSON file") }
            body = parsed
        }
        let path = directory.appendingPathComponent("integrations.json").path
        var registry = IntegrationManifestFile()
        var records: [AccountRecord] = []
        for entry in entries {
            guard let equals = entry.firstIndex(of: "=") else {
                throw ValidationError("--integration \(entry): expected KEY=COMMAND")
            }
            let key = String(entry[..<equals])
            do {
                let words = try commandWords(String(entry[entry.index(after: equals)...]))
                let spec = try await ExternalIntegration.runSpec(
                    command: words, environment: ProcessEnvironment.minimal())
                let manifest = IntegrationManifest(key: key, command: words, spec: spec)
                try manifest.validate()
                registry.upsert(manifest)
                for setup in try await ExternalIntegration(manifest: manifest, logger: logger).setupAccounts(
                    eventBody: body)
                {
                    var record = try accountRecord(
                        setup, integration: key, defaultFrequency: manifest.defaultFrequency, sealer: sealer)
                    record.settings.schedule.frequency = schedule  // the demo's pace, like its GitHub accounts
                    records.append(record)
                }
            } catch let error as ExternalIntegrationError {
                throw ValidationError("--integration \(key): \(error.message)")
            }
        }
        try registry.save(path: path)
        try await AccountsTopicClient(kafka: kafka, topics: topics, logger: logger).put(records)
        return (path, records.count)
    }
}
