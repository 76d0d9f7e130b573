import Foundation
public import IntegrationCatalog
public import Logging
import Metrics
import Synchronization
public import SyncModel

/// An integration that is a program with the sync-integration SDK's CLI contract, run once per event.
///
/// - `CMD spec` prints `{"type":"spec","data":{…}}`.
/// - `CMD setup --event-body JSON --integration-definition JSON` prints `account` messages.
/// - `CMD sync --config JSON --integration-definition JSON --state JSON` prints one JSON message per line:
///   `activity`, `state`, `account` (refreshed tokens) and others, which are ignored.
///
/// Each run is a child process in its own process group with the manifest's limits (timeout, stdout size,
/// concurrency), a minimal environment, and stderr logged line by line with every string of the config
/// redacted. A run that fails in any way — non-zero exit, a signal, a limit, a line that is not a message — is
/// a failed sync: ``IntegrationError`` `.transient`, so the worker records the account as failing,
/// keeps its state, and the next tick tries again.
public struct ExternalIntegration: Integration {
    public var key: String { manifest.key }
    public let manifest: IntegrationManifest
    private let runner: ProcessRunner
    private let slots: ConcurrencyLimit
    private let logger: Logger
    /// `--integration-definition`, encoded once: the manifest does not change while the worker runs.
    private let definitionArgument: Result<String, any Error>

    /// - Parameter inherited: the environment `PATH` is taken from (nil: the worker's); nothing else of it is
    ///   passed on.
    public init(manifest: IntegrationManifest, logger: Logger, inherited: [String: String]? = nil) {
        self.manifest = manifest
        self.runner = ProcessRunner(
            environment: ProcessEnvironment.minimal(adding: manifest.environment, inherited: inherited),
            workingDirectory: manifest.workingDirectory)
        self.slots = ConcurrencyLimit(limit: manifest.concurrency)
        self.definitionArgument = Result { try Self.json(manifest.integrationDefinition) }
        var logger = logger
        logger[metadataKey: "integration"] = "\(manifest.key)"
        self.logger = logger
    }

    public func spec() -> JSONValue { manifest.spec }

    /// The manifest's `concurrency`: the worker starts no more of this integration's jobs at once, so a job never
    /// waits for a slot of this integration while holding one of the worker's.
    public var maxConcurrentSyncs: Int? { manifest.concurrency }

    /// Runs `setup` with `oauthResponse` as the event body and returns the first account it prints.
    public func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        guard let first = try await setupAccounts(eventBody: oauthResponse).first else {
            throw IntegrationError(.invalidConfig, "\(key) setup printed no account message")
        }
        return first
    }

    /// Runs `setup --event-body … --integration-definition …` and returns every `account` message it prints.
    /// - Throws: ``ExternalIntegrationError`` when the run fails or prints no account.
    public func setupAccounts(eventBody: JSONValue) async throws -> [AccountSetup] {
        let redactor = SecretRedactor(eventBody, manifest.definitionSecrets)
        let arguments = [
            "setup", "--event-body", try Self.json(eventBody), "--integration-definition",
            try definitionArgument.get(),
        ]
        let messages = try await run(
            arguments, accountId: nil, secrets: [eventBody, manifest.definitionSecrets], timeout: manifest.timeout)
        var accounts: [AccountSetup] = []
        for message in messages where message.type == "account" {
            accounts.append(try Self.account(from: message, redactor: redactor))
        }
        guard !accounts.isEmpty else {
            throw ExternalIntegrationError.badOutput("\(key) setup exited 0 but printed no account message")
        }
        return accounts
    }

    /// Runs one sync: the CLI's `sync` with the account's config and last committed state (`{}` on the first).
    ///
    /// Activities get stable ids (``activityId(key:accountId:sourceURL:text:occurrence:)``); the last `state`
    /// message is the new state (none: the old one is kept); the last `account` message's config is the
    /// refreshed config, saved in the same transaction as the rest — and, the moment it is printed, stored through
    /// ``SyncModel/SyncRequest/saveRefreshedConfig`` and redacted from everything logged after it.
    /// - Throws: ``IntegrationError`` `.transient` for every failed run that printed nothing worth
    ///   keeping (see the type's summary).
    public func sync(_ request: SyncRequest) async throws -> SyncOutcome {
        // The integration's own max runtime, counted from the moment its process starts: not the job's deadline
        // (GitHub's 60 s), which a job waiting for one of this integration's slots would have spent waiting.
        let timeout = manifest.timeout
        let arguments = [
            "sync", "--config", try Self.json(request.config), "--integration-definition",
            try definitionArgument.get(), "--state", try Self.json(request.state ?? [:]),
        ]
        let run: Run
        do {
            run = try await slots.withSlot {
                try await execute(
                    arguments, accountId: request.accountId, secrets: [request.config, manifest.definitionSecrets],
                    timeout: timeout, saveRefreshed: request.saveRefreshedConfig)
            }
        } catch let error as ExternalIntegrationError {
            throw IntegrationError(.transient, error.message)
        }
        var outcome: SyncOutcome
        if run.result.succeeded {
            do {
                let messages = try Self.messages(in: run.result.stdout, event: "\(key) sync", redactor: run.redactor)
                outcome = try self.outcome(of: messages, request: request, redactor: run.redactor)
            } catch {
                let reason = (error as? ExternalIntegrationError)?.message ?? (error as? IntegrationError)?.message
                guard let reason, let refreshed = run.refreshed else {
                    throw IntegrationError(.transient, reason ?? "\(key) sync: \(type(of: error))")
                }
                // Unusable output, but the provider already retired the old config: keep the new one.
                outcome = SyncOutcome(
                    activities: [], state: request.state ?? [:], updatedConfig: refreshed,
                    status: .failed(reason: "\(reason); its refreshed config was kept"))
            }
        } else {
            outcome = try salvage(run, request: request)
        }
        // The config last printed, as last stored: what the live watch saw is the one truth of the run.
        if let refreshed = run.refreshed { outcome.updatedConfig = refreshed }
        if let failure = run.saveFailure { outcome.status = Self.noting(failure, in: outcome.status) }
        return outcome
    }

    /// `status` with a note that the refreshed config could not be stored when it was printed: the account's status
    /// says so, as GitHub's does for a pair it could not store before use.
    static func noting(_ failure: String, in status: SyncOutcome.Status) -> SyncOutcome.Status {
        let note =
            "the refreshed config could not be stored when it was printed (\(failure.prefix(160))); it is "
            + "written with this sync's output"
        switch status {
        case .complete: return .partial(reason: note, retryAfter: nil)
        case .partial(let reason, let retryAfter): return .partial(reason: "\(reason); \(note)", retryAfter: retryAfter)
        case .failed(let reason): return .failed(reason: "\(reason); \(note)")
        case .needsReauth: return status
        }
    }

    /// A failed run (a non-zero exit, a signal, a limit): what it printed before failing is kept when it is worth
    /// keeping, else the sync failed (`IntegrationError.transient`) and nothing is written.
    ///
    /// - A checkpoint: the activities printed before the last `state` message and that state, outcome `partial` —
    ///   the next job continues from there, so a first sync longer than the max runtime finishes over several
    ///   jobs. Activities after that state are dropped (the next run prints them again, with the same ids).
    /// - A refreshed config (the last `account` message): kept with either, or alone with the unchanged state
    ///   (outcome `failed`), because the provider already retired the old one.
    /// Only complete lines count (a killed program may leave half a line), up to the first that is not a message.
    /// The refreshed config is the last `account` message the run printed at all (``RefreshedConfigs``): it was
    /// stored when printed, so the job's output must not put an older one back.
    func salvage(_ run: Run, request: SyncRequest) throws -> SyncOutcome {
        var printed = Self.completeMessages(in: run.result.stdout)
        let lastState = printed.lastIndex { $0.type == "state" }
        let refreshed = run.refreshed
        // Redacted of every config the program printed, too: its last stderr line may name one.
        let failure = run.redactor("\(key) sync \(run.result.termination)\(run.hint)")
        guard lastState != nil || refreshed != nil else { throw IntegrationError(.transient, failure) }
        printed = lastState.map { Array(printed[...$0]).filter { $0.type != "account" } } ?? []
        var outcome = try self.outcome(of: printed, request: request, redactor: run.redactor)
        outcome.updatedConfig = refreshed
        outcome.status =
            lastState == nil
            ? .failed(reason: "\(failure); its refreshed config was kept")
            : .partial(reason: "stopped early: \(failure); kept up to its last state", retryAfter: nil)
        logger.info(
            "sync failed; kept what it printed before",
            metadata: [
                "accountId": "\(request.accountId)", "activities": "\(outcome.activities.count)",
                "checkpoint": "\(lastState != nil)", "refreshedConfig": "\(refreshed != nil)",
            ])
        return outcome
    }

    /// The messages of `stdout`'s complete lines, up to the first line that is not one.
    static func completeMessages(in stdout: [UInt8]) -> [Message] {
        guard let end = stdout.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
        var messages: [Message] = []
        for (index, raw) in stdout[..<end].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .enumerated()
        {
            guard let parsed = try? Self.messages(in: Array(raw), event: "", redactor: SecretRedactor()) else { break }
            messages += parsed.map { Message(type: $0.type, data: $0.data, line: index + 1) }
        }
        return messages
    }

    /// How a run ended, with the hint its failure reason carries (the last stderr line, redacted).
    struct Run: Sendable {
        var result: ProcessResult
        var hint: String
        /// The config of the last `account` message the program printed (sync: its refreshed config).
        var refreshed: JSONValue?
        /// Why the last refreshed config could not be stored when it was printed; nil when it was, or none was.
        var saveFailure: String?
        /// Redacts the run's config and every config the program printed.
        var redactor: SecretRedactor
    }

    /// Turns a successful run's messages into the outcome (exposed for tests).
    func outcome(of messages: [Message], request: SyncRequest, redactor: SecretRedactor) throws -> SyncOutcome {
        var activities: [Activity] = []
        var occurrences: [String: Int] = [:]
        var state = request.state ?? [:]
        var updatedConfig: JSONValue?
        let fallbackTime = request.scheduledAt ?? Self.epoch
        for message in messages {
            switch message.type {
            case "activity":
                guard let text = message.data["text"]?.stringValue, !text.isEmpty,
                    let sourceURL = message.data["sourceURL"]?.stringValue,
                    sourceURL.hasPrefix("https://") || sourceURL.hasPrefix("http://")
                else {
                    throw IntegrationError(
                        .transient,
                        "\(key) sync printed an activity without text or an http(s) sourceURL (line \(message.line))")
                }
                let digest = Self.digest(sourceURL: sourceURL, text: text)
                let occurrence = occurrences[digest, default: 0] + 1
                occurrences[digest] = occurrence
                activities.append(
                    Activity(
                        text: text, sourceURL: sourceURL,
                        id: Self.activityId(
                            key: key, accountId: request.accountId, digest: digest, occurrence: occurrence),
                        occurredAt: Self.occurredAt(message.data) ?? fallbackTime,
                        kind: message.data["kind"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "activity",
                        accountId: request.accountId))
            case "state":
                state = message.data
            case "account":
                guard let config = message.data["config"], config.objectValue != nil else {
                    throw IntegrationError(
                        .transient,
                        "\(key) sync printed an account message without a config object (line \(message.line))")
                }
                updatedConfig = config
            default:
                continue  // identifier, log and future message types carry nothing the pipeline stores
            }
        }
        return SyncOutcome(activities: activities, state: state, updatedConfig: updatedConfig, status: .complete)
    }

    /// A line of output: `{"type": …, "data": …}`.
    struct Message: Sendable {
        var type: String
        var data: JSONValue
        var line: Int
    }

    /// Runs the CLI with `arguments` appended to its command and parses stdout into messages.
    private func run(_ arguments: [String], accountId: String?, secrets: [JSONValue], timeout: Duration)
        async throws -> [Message]
    {
        let event = arguments[0]
        let run = try await execute(arguments, accountId: accountId, secrets: secrets, timeout: timeout)
        guard run.result.succeeded else {
            throw ExternalIntegrationError.failed(
                run.redactor("\(key) \(event) \(run.result.termination)\(run.hint)"))
        }
        return try Self.messages(in: run.result.stdout, event: "\(key) \(event)", redactor: run.redactor)
    }

    /// Runs the CLI with `arguments` appended to its command; a cancelled run throws `CancellationError`.
    ///
    /// Stdout is watched as it comes (``RefreshedConfigs``): the strings of every `account` message's config are
    /// redacted from each later stderr line, and, given `saveRefreshed`, each is stored at once — by a task of its
    /// own, one at a time, the newest replacing one still waiting, so the pipes never wait for a store. The run
    /// returns once the last one was stored or failed to be.
    /// - Parameter secrets: documents whose strings are redacted from stderr and reasons.
    private func execute(
        _ arguments: [String], accountId: String?, secrets: [JSONValue], timeout: Duration,
        saveRefreshed: (@Sendable (JSONValue) async throws -> Void)? = nil
    ) async throws -> Run {
        let limits = ProcessLimits(timeout: timeout, maxOutputBytes: manifest.maxOutputBytes)
        var logger = logger
        if let accountId { logger[metadataKey: "accountId"] = "\(accountId)" }
        let event = arguments[0]
        let lastStderr = LastLine()
        let (toStore, storing) = AsyncStream.makeStream(of: JSONValue.self, bufferingPolicy: .bufferingNewest(1))
        let refreshes = RefreshedConfigs(secrets: secrets) { config in
            if saveRefreshed != nil { storing.yield(config) }
        }
        async let saveFailure = Self.store(toStore, with: saveRefreshed)
        let result: ProcessResult
        do {
            result = try await runner.run(
                manifest.command + arguments, limits: limits, onStdoutLine: { refreshes.observe($0) }
            ) { [logger] line in
                let redacted = refreshes.redactor(line)
                lastStderr.set(redacted)
                logger.info("\(event) stderr: \(redacted)")
            }
        } catch {
            storing.finish()
            _ = await saveFailure
            throw error
        }
        storing.finish()
        let redactor = refreshes.redactor
        let unsaved = await saveFailure.map { redactor($0) }
        if let unsaved {
            logger.warning(
                "\(event): a refreshed config could not be stored when it was printed; it goes out with the output",
                metadata: ["error": "\(unsaved.prefix(200))"])
        }
        if result.killedDescendants > 0 {
            Counter(label: "activity_sync_integration_processes_killed_total", dimensions: [("integration", key)])
                .increment(by: result.killedDescendants)
            logger.info("\(event): killed \(result.killedDescendants) processes the program left running")
        }
        if result.droppedStderrLines > 0 {
            logger.info("\(event) stderr: \(result.droppedStderrLines) more lines not logged")
        }
        if result.termination == .cancelled { throw CancellationError() }
        return Run(
            result: result, hint: lastStderr.value.map { " (last stderr line: \($0.prefix(160)))" } ?? "",
            refreshed: refreshes.latest, saveFailure: unsaved, redactor: redactor)
    }

    /// Stores each refreshed config `configs` yields, in order; returns why the last one was not stored, if it was
    /// not (an earlier failure is mended by a later config stored).
    private static func store(
        _ configs: AsyncStream<JSONValue>, with save: (@Sendable (JSONValue) async throws -> Void)?
    ) async -> String? {
        guard let save else { return nil }
        var failure: String?
        for await config in configs {
            do {
                try await save(config)
                failure = nil
            } catch {
                failure = "\(error)"
            }
        }
        return failure
    }

    /// Parses stdout: one JSON object per non-blank line with a string `type`; anything else is garbage.
    static func messages(in stdout: [UInt8], event: String, redactor: SecretRedactor) throws -> [Message] {
        var messages: [Message] = []
        for (index, raw) in stdout.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            var line = raw[...]
            while let last = line.last, last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") || last == 9 {
                line = line.dropLast()
            }
            while let first = line.first, first == UInt8(ascii: " ") || first == 9 { line = line.dropFirst() }
            if line.isEmpty { continue }
            guard let value = try? WireFormat.decode(JSONValue.self, from: line), let type = value["type"]?.stringValue
            else {
                let excerpt = redactor(String(decoding: line, as: UTF8.self)).prefix(60)
                throw ExternalIntegrationError.badOutput(
                    "\(event) printed line \(index + 1), which is not a {\"type\",\"data\"} JSON message: \(excerpt)")
            }
            messages.append(Message(type: type, data: value["data"] ?? .null, line: index + 1))
        }
        return messages
    }

    static func account(from message: Message, redactor: SecretRedactor) throws -> AccountSetup {
        let accountId = message.data["accountId"]?.stringValue ?? message.data["accountId"]?.intValue.map(String.init)
        guard let accountId, !accountId.isEmpty, let config = message.data["config"], config.objectValue != nil else {
            throw ExternalIntegrationError.badOutput(
                "setup printed an account message without an accountId or a config object (line \(message.line))")
        }
        return AccountSetup(accountId: accountId, config: config, settings: message.data["settings"] ?? [:])
    }

    /// Runs `CMD spec` and returns the `data` of its `spec` message, unvalidated.
    /// - Throws: ``ExternalIntegrationError`` when the run fails or prints no spec.
    public static func runSpec(command: [String], environment: [String: String], timeout: Duration = .seconds(30))
        async throws -> JSONValue
    {
        let runner = ProcessRunner(environment: environment)
        let result = try await runner.run(
            command + ["spec"], limits: ProcessLimits(timeout: timeout, maxOutputBytes: 1 << 20)
        ) { _ in }
        guard result.succeeded else { throw ExternalIntegrationError.failed("spec \(result.termination)") }
        let messages = try messages(in: result.stdout, event: "spec", redactor: SecretRedactor())
        guard let spec = messages.last(where: { $0.type == "spec" }) else {
            throw ExternalIntegrationError.invalidSpec("`spec` printed no {\"type\":\"spec\"} message")
        }
        return spec.data
    }

    static func json(_ value: JSONValue) throws -> String {
        String(decoding: try WireFormat.encode(value), as: UTF8.self)
    }

    static let epoch = Date(timeIntervalSince1970: 0)
}

// MARK: - Stable ids

extension ExternalIntegration {
    /// The id of an activity the CLI gave no id: `{key}:{accountId}:{digest}`, and `#n` for the n-th identical
    /// activity (same sourceURL and text) of one sync from the second on.
    ///
    /// `digest` is the first 32 hex digits (128 bits) of SHA-256 over `sourceURL + "\n" + text`. The id depends
    /// only on what the CLI printed and on the account, so a sync re-run from the same committed state after a
    /// crash repeats the ids of the lost attempt instead of inventing new ones.
    public static func activityId(key: String, accountId: String, sourceURL: String, text: String, occurrence: Int = 1)
        -> String
    {
        activityId(
            key: key, accountId: accountId, digest: digest(sourceURL: sourceURL, text: text), occurrence: occurrence)
    }

    static func activityId(key: String, accountId: String, digest: String, occurrence: Int) -> String {
        occurrence > 1 ? "\(key):\(accountId):\(digest)#\(occurrence)" : "\(key):\(accountId):\(digest)"
    }

    static func digest(sourceURL: String, text: String) -> String {
        String(SHA256Hex.digest(Array((sourceURL + "\n" + text).utf8)).prefix(32))
    }

    /// `occurredAt`, `createdAt`, `created_at`, `timestamp` or `time` of the activity's data, if one is an RFC
    /// 3339 date. Otherwise the caller uses the job's `scheduledAt`, the same on every re-run of that job.
    static func occurredAt(_ data: JSONValue) -> Date? {
        for field in ["occurredAt", "createdAt", "created_at", "timestamp", "time"] {
            if let text = data[field]?.stringValue, let date = WireFormat.parseDate(text) { return date }
        }
        return nil
    }
}

/// The last stderr line of a run, for the failure reason.
private final class LastLine: Sendable {
    private let line = Mutex<String?>(nil)
    func set(_ value: String) { line.withLock { $0 = value } }
    var value: String? { line.withLock { $0 } }
}

extension IntegrationManifest {
    var timeout: Duration { .seconds(timeoutSeconds) }

    /// The definition's `config` (an OAuth app's client secret, say): redacted like an account's config. The
    /// rest of the definition is the public spec, whose words must stay readable in logs.
    var definitionSecrets: JSONValue { definition?["config"] ?? .null }
}
