import ActivitySyncTesting
import Foundation
import IntegrationCatalog
import Logging
import Synchronization
import SyncModel
import Testing

@testable import ExternalIntegrations

/// The SDK contract through a real Node CLI (Tests/Fixtures/external-integration/counter.js) and small shell
/// CLIs: what a worker gets from a sync, and how every kind of failure becomes a failed sync.
@Suite("External integration", .timeLimit(.minutes(2)))
struct ExternalIntegrationTests {
    static let fixture = RepoPaths.root.appendingPathComponent("Tests/Fixtures/external-integration/counter.js").path
    static let token = "counter-secret-token-4711"

    static func counter(timeoutSeconds: Int = 20, concurrency: Int = 4, maxOutputBytes: Int = 16 << 20) async throws
        -> IntegrationManifest
    {
        let spec = try await ExternalIntegration.runSpec(
            command: ["node", fixture], environment: ProcessEnvironment.minimal())
        return IntegrationManifest(
            key: "counter", command: ["node", fixture], spec: spec, timeoutSeconds: timeoutSeconds,
            concurrency: concurrency, maxOutputBytes: maxOutputBytes)
    }

    /// A CLI written inline: `sh -c SCRIPT counter EVENT --config … …`.
    static func shell(_ script: String, timeoutSeconds: Int = 20, concurrency: Int = 4) -> IntegrationManifest {
        IntegrationManifest(
            key: "shellcli", command: ["/bin/sh", "-c", script, "shellcli"],
            spec: ["name": "Shell", "key": "shellcli", "schedule": ["frequency": "*/5 * * * *"]],
            timeoutSeconds: timeoutSeconds, concurrency: concurrency)
    }

    static func request(mode: String = "ok", state: JSONValue? = nil, scheduledAt: Date? = nil) -> SyncRequest {
        SyncRequest(
            accountId: "acct-1",
            config: ["access_token": .string(token), "mode": .string(mode), "perSync": 2, "delayMs": 0],
            state: state, deadline: Date().addingTimeInterval(60), scheduledAt: scheduledAt)
    }

    @Test("spec is read and validated; setup prints an account with the settings' schedule")
    func specAndSetup() async throws {
        let manifest = try await Self.counter()
        try manifest.validate()
        #expect(manifest.defaultFrequency == "*/5 * * * *")
        let integration = ExternalIntegration(manifest: manifest, logger: Logger(label: "test"))
        let accounts = try await integration.setupAccounts(
            eventBody: ["accountId": "a-9", "token": .string(Self.token), "schedule": "*/2 * * * * *"])
        #expect(accounts.count == 1)
        #expect(accounts.first?.accountId == "a-9")
        #expect(accounts.first?.config["access_token"]?.stringValue == Self.token)
        #expect(accounts.first?.settings["schedule"]?["frequency"]?.stringValue == "*/2 * * * * *")
        #expect(throws: ExternalIntegrationError.self) {
            try IntegrationManifest.validate(spec: manifest.spec, key: "linear")
        }
    }

    @Test("state round-trips between syncs; ids are stable and derived from key, account, URL and text")
    func stateRoundTrip() async throws {
        let integration = ExternalIntegration(manifest: try await Self.counter(), logger: Logger(label: "test"))
        let tick = Date(timeIntervalSince1970: 1_800_000_000)
        let first = try await integration.sync(Self.request(scheduledAt: tick))
        #expect(first.activities.map(\.text) == ["Counter item 1", "Counter item 2"])
        #expect(first.state["cursor"]?.intValue == 2)
        let second = try await integration.sync(Self.request(state: first.state, scheduledAt: tick))
        #expect(second.activities.map(\.text) == ["Counter item 3", "Counter item 4"])
        #expect(second.state["cursor"]?.intValue == 4)
        let again = try await integration.sync(Self.request(state: first.state, scheduledAt: tick))
        #expect(again.activities.map(\.id) == second.activities.map(\.id), "a re-run repeats the ids")
        let activity = try #require(second.activities.first)
        #expect(
            activity.id
                == ExternalIntegration.activityId(
                    key: "counter", accountId: "acct-1", sourceURL: "https://counter.example/items/3",
                    text: "Counter item 3"))
        #expect(activity.id.hasPrefix("counter:acct-1:") && activity.id.count == "counter:acct-1:".count + 32)
        #expect(activity.occurredAt == tick, "no time in the data: the job's scheduledAt")
        #expect(activity.kind == "activity" && activity.accountId == "acct-1")
    }

    @Test("the CLI's stderr reaches the log with every config string redacted")
    func stderrRedacted() async throws {
        let log = CapturedLogs()
        let integration = ExternalIntegration(manifest: try await Self.counter(), logger: log.logger(level: .trace))
        _ = try await integration.sync(Self.request())
        let lines = log.all
        #expect(lines.contains { $0.contains("counter sync with token [redacted] from cursor 0") }, "\(lines)")
        #expect(!lines.contains { $0.contains(Self.token) })
    }

    @Test(
        "exit 1, garbage, 100 MB and a hang are failed syncs (transient), with reasons free of secrets",
        arguments: [
            ("exit1", "exited with status 1"), ("garbage", "line 2, which is not"),
            ("flood", "more than 16777216 bytes"), ("hang", "longer than 2 s"),
        ])
    func misbehaviour(mode: String, reason: String) async throws {
        // The flood must reach the output cap before the timeout even on a loaded machine (Node's start alone took
        // over a second there); the hang needs a short one to stay quick.
        let integration = ExternalIntegration(
            manifest: try await Self.counter(timeoutSeconds: mode == "flood" ? 10 : 2), logger: Logger(label: "test"))
        let started = ContinuousClock.now
        do {
            _ = try await integration.sync(Self.request(mode: mode))
            Issue.record("\(mode) did not fail")
        } catch let error as IntegrationError {
            #expect(error.kind == .transient)
            #expect(error.message.contains(reason), "\(error.message)")
            #expect(!error.message.contains(Self.token), "\(error.message)")
        }
        #expect(ContinuousClock.now - started < .seconds(15))
    }

    @Test("an account message is the refreshed config; identical activities get #n; other types are ignored")
    func accountAndDuplicates() async throws {
        let script = #"""
            echo '{"type":"identifier","data":"x"}'
            echo '{"type":"activity","data":{"text":"same","sourceURL":"https://e.example/1","createdAt":"2026-01-02T03:04:05Z","kind":"ping"}}'
            echo '{"type":"activity","data":{"text":"same","sourceURL":"https://e.example/1"}}'
            echo '{"type":"account","data":{"accountId":"acct-1","config":{"access_token":"new-token-value"}}}'
            """#
        let integration = ExternalIntegration(manifest: Self.shell(script), logger: Logger(label: "test"))
        let outcome = try await integration.sync(Self.request(state: ["keep": true]))
        #expect(outcome.activities.count == 2)
        #expect(outcome.activities[1].id == outcome.activities[0].id + "#2")
        #expect(outcome.activities[0].occurredAt == WireFormat.parseDate("2026-01-02T03:04:05Z"))
        #expect(outcome.activities[0].kind == "ping")
        #expect(outcome.updatedConfig?["access_token"]?.stringValue == "new-token-value")
        #expect(outcome.state == ["keep": true], "no state message: the old state is kept")
    }

    /// A program that refreshed its pair and then failed, naming the new token on stderr: the failure's reason is
    /// redacted of the new token too, not only of the config it was given.
    @Test("a failure's reason never carries a token the program refreshed before failing")
    func refreshedTokenIsRedactedFromTheFailure() async throws {
        let script = #"""
            echo '{"type":"account","data":{"accountId":"acct-1","config":{"access_token":"brand-new-token-42"}}}'
            echo 'refresh went fine, now using brand-new-token-42' >&2
            exit 1
            """#
        let integration = ExternalIntegration(manifest: Self.shell(script), logger: Logger(label: "test"))
        let outcome = try await integration.sync(Self.request())
        #expect(outcome.updatedConfig?["access_token"]?.stringValue == "brand-new-token-42", "the pair is kept")
        guard case .failed(let reason) = outcome.status else {
            Issue.record("expected failed, got \(outcome.status)")
            return
        }
        #expect(reason.contains("[redacted]"), "\(reason)")
        #expect(!reason.contains("brand-new-token-42"), "\(reason)")
    }

    @Test("an activity without an http(s) sourceURL fails the sync")
    func badActivity() async throws {
        let script = #"echo '{"type":"activity","data":{"text":"t","sourceURL":"file:///etc/passwd"}}'"#
        let integration = ExternalIntegration(manifest: Self.shell(script), logger: Logger(label: "test"))
        await #expect(throws: IntegrationError.self) { _ = try await integration.sync(Self.request()) }
    }

    @Test("the per-integration concurrency limit holds syncs back")
    func concurrencyLimit() async throws {
        let integration = ExternalIntegration(
            manifest: Self.shell(#"sleep 0.5; echo '{"type":"state","data":{}}'"#, concurrency: 1),
            logger: Logger(label: "test"))
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 { group.addTask { _ = try await integration.sync(Self.request()) } }
            try await group.waitForAll()
        }
        #expect(ContinuousClock.now - started >= .milliseconds(1500))
    }

    @Test("the integrations file round-trips and refuses bad entries")
    func manifestFile() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "integrations-\(UUID().uuidString).json"
        ).path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var file = IntegrationManifestFile()
        file.upsert(try await Self.counter())
        try file.save(path: path)
        #expect(try IntegrationManifestFile.load(path: path, reservedKeys: ["github"]) == file)
        try Data(#"{"integrations":[{"key":"Bad Key","command":["x"]}]}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: ExternalIntegrationError.self) {
            try IntegrationManifestFile.load(path: path, reservedKeys: ["github"])
        }
        // A hand-edited entry for a built-in key would silently replace GitHub's integration.
        var builtIn = try await Self.counter()
        builtIn.key = "github"
        try Data(WireFormat.encode(IntegrationManifestFile(integrations: [builtIn]))).write(
            to: URL(fileURLWithPath: path))
        #expect { try IntegrationManifestFile.load(path: path, reservedKeys: ["github"]) } throws: {
            "\($0)".contains("github, which is built in")
        }
    }
}

@Suite("External integration runtime", .timeLimit(.minutes(2)))
struct ExternalIntegrationRuntimeTests {
    /// The job's deadline is GitHub's 60 s budget; a job that waited for its integration's slot may have spent it.
    @Test("the max runtime starts when the process starts, not at the job's deadline")
    func maxRuntimeStartsWithTheProcess() async throws {
        let integration = ExternalIntegration(
            manifest: ExternalIntegrationTests.shell(
                #"sleep 1; echo '{"type":"state","data":{"ran":true}}'"#, timeoutSeconds: 10),
            logger: Logger(label: "test"))
        var request = ExternalIntegrationTests.request()
        request.deadline = Date().addingTimeInterval(-5)
        let outcome = try await integration.sync(request)
        #expect(outcome.state == ["ran": true])
        #expect(integration.maxConcurrentSyncs == 4, "the worker admits no more of its jobs than its concurrency")
    }

    @Test("a run that fails after a state keeps what came before that state; after it, and half lines, are dropped")
    func checkpointOfAFailedRun() async throws {
        let script = #"""
            echo '{"type":"activity","data":{"text":"one","sourceURL":"https://example.com/1"}}'
            echo '{"type":"state","data":{"cursor":"1"}}'
            echo '{"type":"activity","data":{"text":"two","sourceURL":"https://example.com/2"}}'
            printf '{"type":"state","da'
            exit 1
            """#
        let integration = ExternalIntegration(
            manifest: ExternalIntegrationTests.shell(script), logger: Logger(label: "test"))
        let outcome = try await integration.sync(ExternalIntegrationTests.request())
        #expect(outcome.activities.map(\.text) == ["one"])
        #expect(outcome.state == ["cursor": "1"])
        guard case .partial(let reason, _) = outcome.status else {
            Issue.record("expected partial, got \(outcome.status)")
            return
        }
        #expect(reason.contains("exited with status 1"))
        let nothing = ExternalIntegration(
            manifest: ExternalIntegrationTests.shell(
                #"echo '{"type":"activity","data":{"text":"one","sourceURL":"https://example.com/1"}}'; exit 1"#),
            logger: Logger(label: "test"))
        await #expect(throws: IntegrationError.self, "no state printed: nothing is kept") {
            _ = try await nothing.sync(ExternalIntegrationTests.request())
        }
    }
}
