import ActivitySyncTesting
import Foundation
import IntegrationCatalog
import Logging
import Synchronization
import SyncModel
import Testing

@testable import ExternalIntegrations

/// A CLI that refreshes its token pair mid-run: what the operator's log shows after the `account` message, and
/// what the worker's store (``SyncModel/SyncRequest/saveRefreshedConfig``) gets, while the CLI still runs.
@Suite("Refreshed configs while the CLI runs", .timeLimit(.minutes(2)))
struct RefreshedConfigTests {
    /// The configs handed to the store, in order, with when each was stored; a store may first wait for `gate`, or
    /// fail.
    final class Store: Sendable {
        let saved = Mutex<[(token: String, at: ContinuousClock.Instant)]>([])
        let gate: (@Sendable () async throws -> Void)?
        let fails: Bool
        init(fails: Bool = false, gate: (@Sendable () async throws -> Void)? = nil) {
            self.fails = fails
            self.gate = gate
        }
        var tokens: [String] { saved.withLock { $0.map(\.token) } }
        func save(_ config: JSONValue) async throws {
            try await gate?()
            if fails { throw StoreDown() }
            saved.withLock { $0.append((config["access_token"]?.stringValue ?? "?", ContinuousClock.now)) }
        }
        struct StoreDown: Error, CustomStringConvertible {
            var description: String { "the state topic is unavailable" }
        }
    }

    static func request(_ store: Store) -> SyncRequest {
        var request = ExternalIntegrationTests.request()
        request.saveRefreshedConfig = { try await store.save($0) }
        return request
    }

    @Test("a token the CLI refreshed is redacted from the stderr lines after it, and stored, while the CLI still runs")
    func redactedAndStoredWhenPrinted() async throws {
        let script = #"""
            echo '{"type":"account","data":{"config":{"access_token":"tok-refreshed-5150"}}}'
            echo 'refreshed, now using tok-refreshed-5150' >&2
            sleep 4
            echo '{"type":"state","data":{"done":true}}'
            """#
        let logs = CapturedLogs()
        let integration = ExternalIntegration(manifest: ExternalIntegrationTests.shell(script), logger: logs.logger)
        let store = Store()
        let outcome = try await integration.sync(Self.request(store))
        let ended = ContinuousClock.now
        #expect(!logs.all.contains { $0.contains("tok-refreshed-5150") }, "\(logs.all)")
        let logged = try #require(logs.first(containing: "now using [redacted]"), "\(logs.all)")
        // Both happened while the CLI slept its 4 s after printing.
        #expect(ended - logged > .seconds(2), "logged \(ended - logged) before the end")
        let stored = try #require(store.saved.withLock { $0.first?.at }, "never stored")
        #expect(ended - stored > .seconds(2), "stored \(ended - stored) before the end, not when printed")
        #expect(store.tokens == ["tok-refreshed-5150"], "stored once")
        #expect(outcome.updatedConfig?["access_token"]?.stringValue == "tok-refreshed-5150")
        #expect(outcome.status == .complete)
    }

    /// The store holds its first call until the CLI printed everything — three refreshes, then about 380 KB of
    /// activities, six times what a pipe holds — and only then returns: a reader that waited for the store would
    /// leave the CLI blocked on a full pipe, and the store would give up waiting.
    @Test("several refreshes: the last one wins and is stored last; the pipes never wait for the store")
    func lastRefreshWinsWithoutBlockingThePipe() async throws {
        let script = #"""
            for n in 1 2 3; do echo "{\"type\":\"account\",\"data\":{\"config\":{\"access_token\":\"tok-gen-$n\"}}}"; done
            i=0
            line='{"type":"activity","data":{"text":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","sourceURL":"https://example.com/x"}}'
            while [ $i -lt 2000 ]; do echo "$line"; i=$((i+1)); done
            echo 'printed everything' >&2
            """#
        let logs = CapturedLogs()
        let integration = ExternalIntegration(manifest: ExternalIntegrationTests.shell(script), logger: logs.logger)
        let cliDone = Mutex<Bool?>(nil)
        let store = Store {
            guard cliDone.withLock({ $0 }) == nil else { return }
            let done = try await eventuallyHolds(within: .seconds(30)) { logs.contains("printed everything") }
            cliDone.withLock { $0 = done }
        }
        let outcome = try await integration.sync(Self.request(store))
        #expect(cliDone.withLock { $0 } == true, "the CLI could not finish while a store was waiting")
        #expect(outcome.activities.count == 2000)
        // In order, the last one last; one printed while an earlier one was being stored may be skipped.
        #expect(store.tokens.last == "tok-gen-3" && store.tokens == store.tokens.sorted(), "\(store.tokens)")
        #expect(outcome.updatedConfig?["access_token"]?.stringValue == "tok-gen-3")
    }

    @Test("a refreshed config that cannot be stored when printed: the status says so, and it goes out with the output")
    func storeFailureIsTold() async throws {
        let script = #"""
            echo '{"type":"account","data":{"config":{"access_token":"tok-unstored-77"}}}'
            echo '{"type":"activity","data":{"text":"one","sourceURL":"https://example.com/1"}}'
            echo '{"type":"state","data":{"cursor":1}}'
            """#
        let integration = ExternalIntegration(
            manifest: ExternalIntegrationTests.shell(script), logger: Logger(label: "test"))
        let outcome = try await integration.sync(Self.request(Store(fails: true)))
        #expect(outcome.activities.count == 1 && outcome.state == ["cursor": 1])
        #expect(outcome.updatedConfig?["access_token"]?.stringValue == "tok-unstored-77")
        guard case .partial(let reason, _) = outcome.status else {
            Issue.record("expected partial, got \(outcome.status)")
            return
        }
        #expect(
            reason.contains("could not be stored when it was printed (the state topic is unavailable)"), "\(reason)")
    }

    @Test("a run that exits 0 with unusable output after refreshing keeps its refreshed config")
    func unusableOutputKeepsTheRefresh() async throws {
        let script = #"""
            echo '{"type":"account","data":{"config":{"access_token":"tok-kept-31"}}}'
            echo 'not a message'
            """#
        let integration = ExternalIntegration(
            manifest: ExternalIntegrationTests.shell(script), logger: Logger(label: "test"))
        let store = Store()
        let outcome = try await integration.sync(Self.request(store))
        #expect(store.tokens == ["tok-kept-31"])
        #expect(outcome.updatedConfig?["access_token"]?.stringValue == "tok-kept-31")
        #expect(outcome.activities.isEmpty && outcome.state == [:], "state unchanged")
        guard case .failed(let reason) = outcome.status else {
            Issue.record("expected failed, got \(outcome.status)")
            return
        }
        #expect(reason.contains("which is not a"), "\(reason)")
    }

    @Test("stdout lines reach their handler before any stderr line the program wrote after them")
    func stdoutBeforeLaterStderr() async throws {
        // 200 KiB of stdout first: more than one read takes, so a reader that took stderr as it came would hand on
        // the stderr line before it saw the marker.
        let script = #"""
            yes "$(printf '%0100d' 0)" | head -n 2000
            echo MARK
            echo after >&2
            """#
        let seenMark = Mutex(false)
        let markBeforeStderr = Mutex<Bool?>(nil)
        let runner = ProcessRunner(environment: ProcessEnvironment.minimal())
        let result = try await runner.run(
            ["/bin/sh", "-c", script], limits: ProcessLimits(timeout: .seconds(20), maxOutputBytes: 1 << 20),
            onStdoutLine: { line in if line.elementsEqual("MARK".utf8) { seenMark.withLock { $0 = true } } }
        ) { line in
            if line == "after" { markBeforeStderr.withLock { $0 = seenMark.withLock { $0 } } }
        }
        #expect(result.succeeded)
        #expect(markBeforeStderr.withLock { $0 } == true)
    }
}
