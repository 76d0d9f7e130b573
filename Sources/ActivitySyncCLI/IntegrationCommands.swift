import ArgumentParser
import Foundation
import GitHub
import IntegrationCatalog
import Logging
import SyncModel

/// `activity-sync integration …`: the integrations' SDK events, runnable by hand, one JSON message per line.
///
/// The arguments are the sync-integration SDK's contract (docs/integrations.md): `--config`, `--state`,
/// `--event-body` and `--integration-definition` carry JSON strings, so a runner that speaks the SDK can run
/// `activity-sync integration github` like any other integration. A file path (or `@path`) is accepted too, for
/// people at a shell.
struct IntegrationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "integration",
        abstract: "Run an integration's spec, setup or sync by hand (like the SDK's IntegrationCLI).",
        subcommands: [GitHubIntegrationCommand.self]
    )
}

struct GitHubIntegrationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "github",
        abstract: "The GitHub integration.",
        subcommands: [Spec.self, Setup.self, Sync.self]
    )

    /// Options every GitHub subcommand shares.
    struct Connection: ParsableArguments {
        @Option(name: .customLong("github-url"), help: "GitHub REST API base URL (e.g. the simulator's).")
        var githubURL: String = "https://api.github.com"

        @Option(help: "OAuth token URL for refreshes (default: GitHub's, or {github-url}/login/oauth/access_token).")
        var tokenURL: String?

        @Option(
            help: ArgumentHelp(
                "The SDK's integration definition (JSON, a file, or @file); `config.client_id` and "
                    + "`config.client_secret` in it are the OAuth app's, for refreshes."))
        var integrationDefinition: String?

        @Flag(help: "Log debug details to stderr (never tokens).")
        var verbose = false

        func integration() throws -> GitHubIntegration {
            var configuration = GitHubConfiguration(baseURL: githubURL)
            configuration.tokenURL = tokenURL
            let environment = ProcessInfo.processInfo.environment
            configuration.clientId = environment["GITHUB_CLIENT_ID"]
            configuration.clientSecret = environment["GITHUB_CLIENT_SECRET"]
            if let integrationDefinition {
                let definition = try readJSON(integrationDefinition, option: "--integration-definition")
                configuration.clientId = definition["config"]?["client_id"]?.stringValue ?? configuration.clientId
                configuration.clientSecret =
                    definition["config"]?["client_secret"]?.stringValue ?? configuration.clientSecret
            }
            return GitHubIntegration(configuration: configuration, logger: logger())
        }

        /// Logs go to stderr: stdout carries only the JSON messages.
        func logger() -> Logger {
            var logger = Logger(label: "activity-sync.github", factory: { StreamLogHandler.standardError(label: $0) })
            logger.logLevel = verbose ? .debug : .warning
            return logger
        }
    }

    struct Spec: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the integration's spec as JSON.")

        func run() async throws {
            let integration = GitHubIntegration(
                logger: Logger(label: "activity-sync.github", factory: { _ in SwiftLogNoOpLogHandler() }))
            try printLine(Envelope(type: "spec", data: integration.spec()))
        }
    }

    struct Setup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Turn an OAuth response into an account message (reads GET /user).")

        @Option(
            name: [.customLong("event-body"), .customLong("payload")],
            help: "The OAuth response {access_token, refresh_token?, …}: JSON, a file, or @file.")
        var eventBody: String

        @OptionGroup var connection: Connection

        func run() async throws {
            let oauth = try readJSON(eventBody, option: "--event-body")
            let account = try await connection.integration().setup(oauthResponse: oauth)
            try printLine(Envelope(type: "account", data: account))
        }
    }

    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sync one account: prints activity messages, an account message if the tokens were "
                + "refreshed, then exactly one state message.")

        @Option(
            help: ArgumentHelp(
                "The account config, or the account message `integration github setup` printed: JSON, a file, "
                    + "or @file."))
        var config: String

        @Option(help: "The previous state (or a state message): JSON, a file, or @file; omit or {} for a first sync.")
        var state: String?

        @Option(help: "Re-read from this RFC 3339 time instead of the saved watermark.")
        var since: String?

        @Option(help: "Seconds the sync may take before it stops and saves its progress.")
        var timeout: Int = 120

        @OptionGroup var connection: Connection

        func run() async throws {
            let configDocument = try readJSON(config, option: "--config")
            let isAccountMessage = configDocument["type"]?.stringValue == "account"
            let accountData = isAccountMessage ? configDocument["data"] ?? .null : configDocument
            let accountConfig = isAccountMessage ? accountData["config"] ?? .null : configDocument
            let accountId = accountData["accountId"]?.stringValue ?? "cli"
            var previous: JSONValue?
            if let state {
                let document = try readJSON(state, option: "--state")
                previous = document["type"]?.stringValue == "state" ? document["data"] : document
            }
            var sinceDate: Date?
            if let since {
                guard let parsed = WireFormat.parseDate(since) else {
                    throw ValidationError("--since must be an RFC 3339 time such as 2026-12-01T04:05:00Z")
                }
                sinceDate = parsed
            }
            let request = SyncRequest(
                accountId: accountId, config: accountConfig, state: previous, since: sinceDate,
                deadline: Date().addingTimeInterval(Double(timeout)))
            let outcome = try await connection.integration().sync(request)
            for activity in outcome.activities { try printLine(Envelope(type: "activity", data: activity)) }
            if let updated = outcome.updatedConfig {
                var data = accountData.objectValue ?? ["accountId": .string(accountId)]
                data["config"] = updated
                try printLine(Envelope(type: "account", data: JSONValue.object(data)))
            }
            try printLine(Envelope(type: "state", data: outcome.state))
            switch outcome.status {
            case .complete: break
            case .partial(let reason, let retryAfter):
                let retry = retryAfter.map { "; retry after \(WireFormat.formatDate($0))" } ?? ""
                FileHandle.standardError.write(Data("sync partial: \(reason)\(retry)\n".utf8))
            case .needsReauth(let reason):
                FileHandle.standardError.write(Data("sync needs re-authentication: \(reason)\n".utf8))
                throw ExitCode(3)
            case .failed(let reason):
                FileHandle.standardError.write(Data("sync failed: \(reason)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

/// An argument that is JSON itself (the SDK's contract), or names a file holding it (`@path`, or a path that
/// exists). Error messages name the option, never its value: it may hold a token.
func readJSON(_ argument: String, option: String) throws -> JSONValue {
    let trimmed = argument.trimmingCharacters(in: .whitespacesAndNewlines)
    var path: String?
    if trimmed.hasPrefix("@") {
        path = String(trimmed.dropFirst())
    } else if !(trimmed.hasPrefix("{") || trimmed.hasPrefix("[")), FileManager.default.fileExists(atPath: argument) {
        path = argument
    }
    let data: Data
    if let path {
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ValidationError("\(option): cannot read \(path): \(error.localizedDescription)")
        }
    } else {
        data = Data(argument.utf8)
    }
    do {
        return try WireFormat.decoder().decode(JSONValue.self, from: data)
    } catch {
        let source = path.map { "the file \($0)" } ?? "the argument"
        throw ValidationError("\(option): \(source) is not JSON (pass a JSON string, a file path or @file)")
    }
}

/// One message per line on stdout, in the wire format (sorted keys, RFC 3339 dates).
private func printLine<T: Encodable>(_ value: T) throws {
    var bytes = try WireFormat.encode(value)
    bytes.append(UInt8(ascii: "\n"))
    FileHandle.standardOutput.write(Data(bytes))
}
