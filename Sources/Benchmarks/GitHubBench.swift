import ArgumentParser
import Foundation
import GitHub
import GitHubSimulator
import IntegrationCatalog
import Logging
import SyncModel

/// `activity-sync bench github`: N accounts × R rounds against an in-process GitHub simulator.
///
/// Round 1 is every account's first sync (24 h window); later rounds are the steady state, where some accounts
/// have new items and the rest are unchanged. Requests and quota per sync come from the simulator's own
/// request log and quota counters, not from the client's view.
struct GitHubBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "github",
        abstract: "Sync N simulated accounts for R rounds at a given latency; print syncs/s, requests and quota "
            + "per sync, p50/p99 sync time.")

    @Option(help: "Simulated accounts, synced concurrently each round.")
    var accounts: Int = 50

    @Option(help: "Rounds; the first is every account's first sync.")
    var rounds: Int = 5

    @Option(help: "Simulated GitHub latency per request, in milliseconds.")
    var latencyMs: Int = 50

    @Option(help: "Pause between rounds, in milliseconds (new items keep appearing meanwhile).")
    var pauseMs: Int = 1000

    @Option(help: "Mean seconds between new items per simulated account.")
    var activitySeconds: Int = 20

    @Option(help: "Simulator seed.")
    var seed: UInt64 = 1

    @Option(help: "Mean number of history items per simulated account before the first sync (a busy account: 400).")
    var historyItems: Int = 30

    @Flag(help: "Simulate GitHub's one thread per subject, re-bumped by new activity.")
    var threadBumps = false

    @Option(name: .customLong("event-lag-s"), help: "Events show up 0…S seconds after they happen.")
    var eventLagSeconds: Double = 0

    private struct Sample {
        var round: Int
        var seconds: Double
        var requests: Int
        var quota: Int
        var activities: Int
        var complete: Bool
        /// Bytes of the state record the worker would write after this sync (`StateRecord` in the wire format).
        var stateBytes: Int
    }

    func validate() throws {
        guard accounts > 0, rounds > 0, latencyMs >= 0, pauseMs >= 0, activitySeconds > 0 else {
            throw ValidationError("--accounts, --rounds and --activity-seconds must be positive")
        }
        guard historyItems >= 0 else { throw ValidationError("--history-items must be 0 or more") }
        guard eventLagSeconds >= 0, eventLagSeconds.isFinite else {
            throw ValidationError("--event-lag-s must be 0 or more seconds")
        }
    }

    func run() async throws {
        let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        var simConfig = SimulatorConfiguration()
        simConfig.users = accounts
        simConfig.seed = seed
        simConfig.latency = .milliseconds(latencyMs)
        simConfig.pollInterval = 0  // measure conditional requests, not skipped polls
        simConfig.activityInterval = .seconds(activitySeconds)
        simConfig.quotaPerHour = 1_000_000
        simConfig.threadBumps = threadBumps
        simConfig.historyItems = historyItems
        simConfig.eventLag = .milliseconds(Int64(eventLagSeconds * 1000))
        let simulator = GitHubSimulator(configuration: simConfig, logger: quiet)
        try await simulator.start()
        let integration = GitHubIntegration(
            configuration: GitHubConfiguration(baseURL: simulator.baseURL), logger: quiet)
        let users = simulator.users
        var states: [String: JSONValue] = [:]
        var samples: [Sample] = []
        var busySeconds = 0.0
        /// Process CPU (client and in-process simulator together) per sync, for each round after the first.
        var laterCPUPerSync: [Double] = []

        for round in 1...rounds {
            let logMark = simulator.requests().count
            let quotaBefore = Dictionary(
                uniqueKeysWithValues: users.map { ($0.login, simulator.quotaUsed(token: $0.token)) })
            let roundStart = ContinuousClock.now
            let cpuStart = processCPUSeconds()
            let results = try await withThrowingTaskGroup(of: (String, Double, SyncOutcome).self) { group in
                for user in users {
                    let state = states[user.login]
                    group.addTask {
                        let started = ContinuousClock.now
                        let outcome = try await integration.sync(
                            SyncRequest(
                                accountId: String(user.id),
                                config: ["access_token": .string(user.token)], state: state,
                                deadline: Date().addingTimeInterval(60)))
                        return (user.login, seconds(ContinuousClock.now - started), outcome)
                    }
                }
                var collected: [(String, Double, SyncOutcome)] = []
                for try await result in group { collected.append(result) }
                return collected
            }
            busySeconds += seconds(ContinuousClock.now - roundStart)
            if round > 1 { laterCPUPerSync.append((processCPUSeconds() - cpuStart) / Double(users.count)) }
            let log = simulator.requests().dropFirst(logMark)
            var requestsByLogin: [String: Int] = [:]
            for entry in log { if let login = entry.login { requestsByLogin[login, default: 0] += 1 } }
            for (login, duration, outcome) in results {
                states[login] = outcome.state
                let user = users.first { $0.login == login }!
                let token = user.token
                let scheduledAt = Date()
                let record = StateRecord(
                    accountId: String(user.id), integration: "github",
                    lastJob: JobMarker(
                        jobId: SyncJob.makeId(accountId: String(user.id), scheduledAt: scheduledAt),
                        scheduledAt: scheduledAt),
                    updatedAt: scheduledAt, data: outcome.state)
                let stateBytes = (try? WireFormat.encode(record).count) ?? 0
                samples.append(
                    Sample(
                        round: round, seconds: duration, requests: requestsByLogin[login] ?? 0,
                        quota: simulator.quotaUsed(token: token) - (quotaBefore[login] ?? 0),
                        activities: outcome.activities.count, complete: outcome.status == .complete,
                        stateBytes: stateBytes))
            }
            if round < rounds { try await Task.sleep(for: .milliseconds(pauseMs)) }
        }
        await simulator.stop()
        report(samples, busySeconds: busySeconds, laterCPUPerSync: laterCPUPerSync)
    }

    private func report(_ samples: [Sample], busySeconds: Double, laterCPUPerSync: [Double]) {
        let command =
            "activity-sync bench github --accounts \(accounts) --rounds \(rounds) --latency-ms \(latencyMs) "
            + "--pause-ms \(pauseMs) --activity-seconds \(activitySeconds) --seed \(seed)"
            + (historyItems != 30 ? " --history-items \(historyItems)" : "") + (threadBumps ? " --thread-bumps" : "")
            + (eventLagSeconds > 0 ? " --event-lag-s \(eventLagSeconds)" : "")
        print("command: \(command)")
        print("syncs: \(samples.count), incomplete: \(samples.filter { !$0.complete }.count)")
        print(
            String(format: "syncs/s (time spent syncing, pauses excluded): %.1f", Double(samples.count) / busySeconds))
        let groups: [(String, [Sample])] = [
            ("first sync (24 h window)", samples.filter { $0.round == 1 }),
            ("later, no new activity", samples.filter { $0.round > 1 && $0.activities == 0 }),
            ("later, with new items", samples.filter { $0.round > 1 && $0.activities > 0 }),
            ("all later syncs", samples.filter { $0.round > 1 }),
        ]
        print("| syncs | kind | requests/sync | quota/sync | activities/sync | p50 ms | p99 ms |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for (name, group) in groups where !group.isEmpty {
            let n = Double(group.count)
            let times = group.map(\.seconds).sorted()
            let numbers = String(
                format: "%.2f | %.2f | %.2f | %.0f | %.0f", Double(group.map(\.requests).reduce(0, +)) / n,
                Double(group.map(\.quota).reduce(0, +)) / n, Double(group.map(\.activities).reduce(0, +)) / n,
                percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000)
            print("| \(group.count) | \(name) | \(numbers) |")
        }
        // State records as the worker writes them: after the first sync, and after the last round.
        for (name, group) in [
            ("after first sync", samples.filter { $0.round == 1 }),
            ("after last round", samples.filter { $0.round == rounds }),
        ] where !group.isEmpty {
            let sizes = group.map(\.stateBytes).sorted()
            print(
                "state record bytes \(name): mean \(sizes.reduce(0, +) / sizes.count), p50 \(Int(percentile(sizes.map(Double.init), 0.5))), max \(sizes.last ?? 0)"
            )
        }
        if !laterCPUPerSync.isEmpty {
            let sorted = laterCPUPerSync.sorted()
            print(
                String(
                    format: "CPU per later sync (process: client and in-process simulator): p50 %.2f ms, max %.2f ms",
                    percentile(sorted, 0.5) * 1000, (sorted.last ?? 0) * 1000))
        }
    }

    private func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let index = min(sorted.count - 1, max(0, Int((Double(sorted.count) * p).rounded(.up)) - 1))
        return sorted[index]
    }
}

/// User plus system CPU time of this process so far.
private func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    func value(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return value(usage.ru_utime) + value(usage.ru_stime)
}

private func seconds(_ duration: Duration) -> Double {
    duration.timeInterval
}
