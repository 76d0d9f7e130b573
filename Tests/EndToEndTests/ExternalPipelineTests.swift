import ActivitySyncTesting
import ExternalIntegrations
import Foundation
import Kafka
import SyncModel
import Testing
import GitHubSimulator

/// An external integration — the Node CLI in Tests/Fixtures/external-integration — registered with
/// `integrations add`, accounts created with `accounts setup`, and run by scheduler and worker processes on the
/// embedded cluster, exactly as the built-in GitHub integration is.
///
/// The fixture's truth is simple: an account's activities are "Counter item 1 … n" once each, where n is the
/// cursor of its last committed state. A state that did not round-trip shows up as repeated or missing items.
@Suite("External integrations end to end", .serialized, .timeLimit(.minutes(5)))
struct ExternalPipelineTests {
    static let fixture = RepoPaths.root.appendingPathComponent("Tests/Fixtures/external-integration/counter.js").path

    /// The pipeline plus an integrations file naming the fixture, and the fixture's accounts.
    struct Run {
        let pipeline: Pipeline
        let integrationsFile: String
        var accounts: [String: String] = [:]  // accountId → token

        init(timeoutSeconds: Int = 20) async throws {
            pipeline = try await Pipeline(accounts: 1)
            integrationsFile =
                FileManager.default.temporaryDirectory
                .appendingPathComponent("integrations-\(UUID().uuidString).json").path
            let add = try ActivitySyncProcess(
                "integrations add",
                arguments: [
                    "integrations", "add", "counter", "--command", "node \(ExternalPipelineTests.fixture)",
                    "--integrations-file", integrationsFile, "--timeout-s", "\(timeoutSeconds)",
                ])
            let status = try await add.waitForExit(timeout: .seconds(30))
            #expect(status == 0, "integrations add: \(add.allOutput)")
            let list = try ActivitySyncProcess(
                "integrations list", arguments: ["integrations", "list", "--integrations-file", integrationsFile])
            _ = try await list.waitForExit(timeout: .seconds(30))
            #expect(
                list.stdoutLines.contains {
                    $0.hasPrefix("counter") && $0.contains("*/5 * * * *") && $0.contains(" \(timeoutSeconds)s ")
                        && $0.contains(" 8 ")
                }, "the max runtime and the concurrency are listed: \(list.allOutput)")
            #expect(list.stdoutLines.contains { $0.hasPrefix("github") && $0.contains("(built in)") })
        }

        /// `accounts setup counter --event-body F`: the fixture's setup, imported and sealed.
        mutating func setUp(_ accountId: String, mode: String = "ok", delayMs: Int = 0) async throws {
            let token = "counter-secret-\(accountId)-\(UUID().uuidString.prefix(8))"
            let body = FileManager.default.temporaryDirectory.appendingPathComponent("event-\(UUID().uuidString).json")
            defer { try? FileManager.default.removeItem(at: body) }
            let event: JSONValue = [
                "accountId": .string(accountId), "token": .string(token), "mode": .string(mode),
                "delayMs": .number(Double(delayMs)), "schedule": "*/2 * * * * *",
            ]
            try Data(try WireFormat.encode(event)).write(to: body)
            let setup = try ActivitySyncProcess(
                "accounts setup",
                arguments: [
                    "accounts", "setup", "counter", "--event-body", body.path, "--integrations-file",
                    integrationsFile, "--bootstrap", pipeline.bootstrapServers, "--sealing-key-file",
                    pipeline.keyFile.path,
                ])
            let status = try await setup.waitForExit(timeout: .seconds(60))
            #expect(status == 0, "accounts setup: \(setup.allOutput)")
            #expect(
                setup.stdoutLines.contains {
                    $0.contains("set up account \(accountId) (counter, schedule '*/2 * * * * *'")
                })
            accounts[accountId] = token
        }

        func startScheduler() throws -> ActivitySyncProcess {
            try ActivitySyncProcess(
                "scheduler",
                arguments: ["scheduler", "--id", "scheduler-1", "--integrations-file", integrationsFile]
                    + pipeline.commonArguments)
        }

        func startWorker(_ id: String = "worker-1", delivery: String = "exactly-once") throws -> ActivitySyncProcess {
            try ActivitySyncProcess(
                id,
                arguments: [
                    "worker", "--id", id, "--github-url", pipeline.simulator.baseURL, "--commit-interval-ms",
                    "200", "--integrations-file", integrationsFile, "--delivery", delivery,
                ] + pipeline.commonArguments)
        }

        /// The fixture's activities on the topic, in order, repeats included.
        func activities() async throws -> [Activity] {
            try await pipeline.reader.readAll(pipeline.topics.activities, partitions: pipeline.partitions)
                .compactMap { message in
                    guard let value = message.value else { return nil }
                    let activity = try WireFormat.decode(Envelope<Activity>.self, from: value).data
                    return accounts[activity.accountId] != nil ? activity : nil
                }
        }

        /// The last state record per account.
        func states() async throws -> [String: StateRecord] {
            var latest: [String: StateRecord] = [:]
            for message in try await pipeline.reader.readAll(pipeline.topics.state, partitions: pipeline.partitions) {
                guard let value = message.value, let record = try? WireFormat.decode(StateRecord.self, from: value),
                    accounts[record.accountId] != nil
                else { continue }
                latest[record.accountId] = record
            }
            return latest
        }

        /// Every status record per account, in order.
        func statuses() async throws -> [String: [AccountStatus]] {
            var all: [String: [AccountStatus]] = [:]
            for message in try await pipeline.reader.readAll(pipeline.topics.status, partitions: pipeline.partitions) {
                guard let value = message.value,
                    let status = try? WireFormat.decode(Envelope<AccountStatus>.self, from: value).data,
                    accounts[status.accountId] != nil
                else { continue }
                all[status.accountId, default: []].append(status)
            }
            return all
        }

        /// The highest item number per account.
        func highestItems(_ emitted: [Activity]) -> [String: Int] {
            var highest: [String: Int] = [:]
            for activity in emitted {
                guard let number = Int(activity.text.dropFirst("Counter item ".count)) else { continue }
                highest[activity.accountId] = max(highest[activity.accountId] ?? 0, number)
            }
            return highest
        }

        /// Items per account by number, checked against the fixture's truth: every id is the one derived from
        /// key, account, sourceURL and text, and each account's items are exactly 1 … its largest.
        func checkTruth(_ emitted: [Activity]) -> [String: Int] {
            var highest: [String: Int] = [:]
            var numbers: [String: Set<Int>] = [:]
            for activity in emitted {
                #expect(
                    activity.id
                        == ExternalIntegration.activityId(
                            key: "counter", accountId: activity.accountId, sourceURL: activity.sourceURL,
                            text: activity.text), "an id not derived from the activity: \(activity.id)")
                guard let number = Int(activity.text.dropFirst("Counter item ".count)) else {
                    Issue.record("unexpected activity \(activity.text)")
                    continue
                }
                numbers[activity.accountId, default: []].insert(number)
                highest[activity.accountId] = max(highest[activity.accountId] ?? 0, number)
            }
            for (account, seen) in numbers {
                #expect(seen == Set(1...(highest[account] ?? 1)), "account \(account) has gaps: \(seen.sorted())")
            }
            return highest
        }

        func shutdown(_ processes: [ActivitySyncProcess]) async {
            await pipeline.shutdown(processes)
            try? FileManager.default.removeItem(atPath: integrationsFile)
        }
    }

    @Test("activities and state flow through Kafka as for the built-in integration; state round-trips; no secret leaks")
    func deliversThroughKafka() async throws {
        var run = try await Run()
        for account in ["c1", "c2", "c3"] { try await run.setUp(account) }
        let scheduler = try run.startScheduler()
        let worker = try run.startWorker()
        do {
            try await eventually("three syncs per account", timeout: .seconds(90), interval: .seconds(1)) {
                let counts = Dictionary(grouping: try await run.activities(), by: \.accountId)
                return run.accounts.keys.allSatisfy { (counts[$0]?.count ?? 0) >= 6 }
            }
            _ = await scheduler.stop(grace: .seconds(20))
            _ = await worker.stop(grace: .seconds(20))
            let emitted = try await run.activities()
            let highest = run.checkTruth(emitted)
            #expect(emitted.count == Set(emitted.map(\.id)).count, "repeats without any failure")
            // The state the CLI printed is what the next sync got: the committed cursor is the highest item.
            let states = try await run.states()
            for account in run.accounts.keys {
                #expect(states[account]?.data["cursor"]?.intValue == highest[account], "account \(account)")
                #expect(states[account]?.data["syncs"]?.intValue == (highest[account] ?? 0) / 2)
                #expect(states[account]?.integration == "counter")
            }
            // The embedded cluster keeps no offsets sent through a transaction, so the state invariant has nothing to
            // compare with here (as in PipelineTests); the kill test below checks it at least once.
            let invariant = try await run.pipeline.stateInvariant(accounts: Set(run.accounts.keys))
            #expect(invariant.checked == 0, "the embedded cluster started storing transactional offsets")
            let statuses = try await run.statuses()
            #expect(run.accounts.keys.allSatisfy { statuses[$0]?.last?.status == .ok })
            let validation = try await run.pipeline.validateRecordsAgainstSchemas()
            #expect(validation.status == 0, "\(validation.output.suffix(3000))")
            // The CLI printed its token on stderr; the worker logged the line, redacted. No topic holds a token.
            #expect(worker.allOutput.contains("counter sync with token [redacted]"))
            let raw = try await run.pipeline.rawTopicBytes()
            for token in run.accounts.values {
                #expect(!raw.contains(token), "a token is on a topic")
                #expect(
                    !worker.allOutput.contains(token) && !scheduler.allOutput.contains(token), "a token is in a log")
            }
        } catch {
            Issue.record("worker: \(worker.allOutput.suffix(3000))")
            await run.shutdown([scheduler, worker])
            throw error
        }
        await run.shutdown([scheduler, worker])
    }

    @Test("a worker killed mid-sync and restarted repeats only seen ids and loses nothing")
    func crashMidSync() async throws {
        var run = try await Run()
        // Each sync takes 1.5 s after printing its activities, so a kill lands inside one.
        for account in ["k1", "k2"] { try await run.setUp(account, delayMs: 1500) }
        let scheduler = try run.startScheduler()
        // At least once, as in PipelineTests' kill test: the embedded cluster does not fence a restarted producer.
        var worker = try run.startWorker(delivery: "at-least-once")
        do {
            // Kill while a sync is running from the last committed state: the CLI logged its start ("from cursor
            // n", n = the account's highest committed item) and its output is not committed yet.
            try await eventually(
                "a sync running from the last committed state", timeout: .seconds(90), interval: .milliseconds(50)
            ) {
                let highest = run.highestItems(try await run.activities())
                let lines = worker.stderrLines
                return highest.contains { account, item in
                    lines.contains { $0.contains("accountId=\(account) ") && $0.hasSuffix("from cursor \(item)") }
                }
            }
            worker.send(SIGKILL)
            _ = try await worker.waitForExit()
            let before = try await run.activities()
            worker = try run.startWorker(delivery: "at-least-once")
            try await eventually("progress after the restart", timeout: .seconds(120), interval: .seconds(1)) {
                let counts = Dictionary(grouping: try await run.activities(), by: \.accountId)
                return run.accounts.keys.allSatisfy { Set(counts[$0]?.map(\.id) ?? []).count >= 8 }
            }
            _ = await scheduler.stop(grace: .seconds(20))
            _ = await worker.stop(grace: .seconds(20))
            let emitted = try await run.activities()
            let highest = run.checkTruth(emitted)
            var seen = Set<String>()
            let repeated = emitted.filter { !seen.insert($0.id).inserted }.map(\.id)
            let repeats = repeated.count
            #expect(
                Set(repeated).isSubset(of: Set(before.map(\.id))),
                "only ids written before the kill repeat: \(Set(repeated).subtracting(before.map(\.id)))")
            let states = try await run.states()
            for account in run.accounts.keys {
                #expect(states[account]?.data["cursor"]?.intValue == highest[account], "account \(account)")
            }
            let invariant = try await run.pipeline.stateInvariant(accounts: Set(run.accounts.keys))
            #expect(invariant.checked == run.accounts.count, "every account had committed jobs")
            #expect(invariant.violations.isEmpty, "\(invariant.violations)")
            print(
                "external CLI, worker SIGKILL mid-sync: \(emitted.count) records (\(before.count) before the kill), \(repeats) repeats of seen ids"
            )
        } catch {
            Issue.record("worker: \(worker.allOutput.suffix(3000))")
            await run.shutdown([scheduler, worker])
            throw error
        }
        await run.shutdown([scheduler, worker])
    }

    /// The fixture's `rotate` mode: a provider that retires a token the moment it is refreshed. The worker is
    /// SIGKILLed while the CLI, having printed its new config, still runs; the restarted worker's sync must get the
    /// new token, or the account would be locked out.
    @Test(
        "a worker SIGKILLed while a CLI that rotated its token still runs: after the restart it syncs with the new token"
    )
    func rotatedTokenSurvivesSIGKILL() async throws {
        var run = try await Run()
        try await run.setUp("r1", mode: "rotate")
        let token = try #require(run.accounts["r1"])
        let scheduler = try run.startScheduler()
        let first = try run.startWorker(delivery: "at-least-once")
        var worker = first
        do {
            try await eventually(
                "the CLI rotated its token, the worker stored it", timeout: .seconds(90), interval: .milliseconds(50)
            ) {
                let lines = worker.stderrLines
                return lines.contains { $0.contains("refreshed, now using [redacted]; waiting") }
                    && lines.contains { $0.contains("a refreshed token pair was stored before use") }
            }
            worker.send(SIGKILL)
            _ = try await worker.waitForExit()
            #expect(try await run.activities().isEmpty, "nothing committed before the kill")
            worker = try run.startWorker(delivery: "at-least-once")
            try await eventually("a sync with the rotated token", timeout: .seconds(90), interval: .seconds(1)) {
                try await run.activities().contains { $0.accountId == "r1" }
            }
            _ = await scheduler.stop(grace: .seconds(20))
            _ = await worker.stop(grace: .seconds(20))
            #expect(worker.stderrLines.contains { $0.contains("accountId=r1 ") && $0.contains("from cursor 0") })
            _ = run.checkTruth(try await run.activities())
            for output in [first.allOutput, worker.allOutput, scheduler.allOutput] {
                #expect(!output.contains(token), "the token (or the rotated one, which starts with it) is in a log")
            }
            let raw = try await run.pipeline.rawTopicBytes()
            #expect(!raw.contains(token), "a token is on a topic")
        } catch {
            Issue.record("worker: \(worker.allOutput.suffix(3000))")
            await run.shutdown([scheduler, worker])
            throw error
        }
        await run.shutdown([scheduler, worker])
    }

    @Test("a CLI that hangs, exits 1, prints garbage or 100 MB is contained: sync failed, state kept, worker up")
    func misbehavingCLIs() async throws {
        var run = try await Run(timeoutSeconds: 3)
        try await run.setUp("good")
        let reasons = [
            "hang": "ran longer than 3 s", "exit1": "exited with status 1", "garbage": "which is not a",
            "flood": "more than 16777216 bytes",
        ]
        for mode in reasons.keys { try await run.setUp(mode, mode: mode) }
        let scheduler = try run.startScheduler()
        let worker = try run.startWorker()
        do {
            try await eventually(
                "every misbehaving account reported failing", timeout: .seconds(120), interval: .seconds(1)
            ) {
                let statuses = try await run.statuses()
                return reasons.allSatisfy { mode, reason in
                    statuses[mode]?.contains { $0.status == .failing && ($0.reason ?? "").contains(reason) } == true
                }
            }
            try await eventually("the good account keeps syncing", timeout: .seconds(60), interval: .seconds(1)) {
                try await run.activities().filter { $0.accountId == "good" }.count >= 4
            }
            #expect(worker.isRunning, "the worker survived")
            let emitted = try await run.activities()
            #expect(emitted.allSatisfy { $0.accountId == "good" }, "a failed sync published activities")
            // A failed sync does not advance state: a failing account's record holds only its failure streak (what
            // backs its next ticks off), no data and no tick.
            let states = try await run.states()
            #expect(states["good"]?.lastJob != nil)
            for (mode, state) in states where mode != "good" {
                #expect(state.lastJob == nil && state.data == [:], "a failed sync advanced \(mode)'s state")
                #expect((state.failures?.count ?? 0) >= 1, "\(mode): \(state)")
            }
            #expect(worker.allOutput.contains("giving up on purpose (token [redacted])"))
            for token in run.accounts.values { #expect(!worker.allOutput.contains(token), "a token is in the log") }
            let statuses = try await run.statuses()
            for (mode, list) in statuses where mode != "good" {
                for status in list { #expect(!(status.reason ?? "").contains(run.accounts[mode] ?? "-")) }
            }
        } catch {
            Issue.record("worker: \(worker.allOutput.suffix(4000))")
            await run.shutdown([scheduler, worker])
            throw error
        }
        await run.shutdown([scheduler, worker])
    }

    @Test("activity-sync dev --integration KEY=COMMAND shows the external integration's activities live")
    func devMode() async throws {
        let dev = try ActivitySyncProcess(
            "dev",
            arguments: [
                "dev", "--duration", "15", "--accounts", "1", "--workers", "1", "--every", "2s", "--integration",
                "counter=node \(Self.fixture)",
            ])
        let status = try await dev.waitForExit(timeout: .seconds(150))
        #expect(status == 0, "dev exited \(status): \(dev.allOutput.suffix(3000))")
        #expect(dev.stdoutLines.contains { $0.hasPrefix("  external   1 account(s) of 1 integration(s)") })
        #expect(
            dev.stdoutLines.contains { $0.contains("[counter-demo] Counter item 2") }, "\(dev.allOutput.suffix(2000))")
    }
}
