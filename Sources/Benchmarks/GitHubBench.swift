import ArgumentParser
import Foundation
import GitHub
import GitHubSimulator
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

    private struct Sample {
        var round: Int
        var seconds: Double
        var requests: Int
        var quota: Int
        var activities: Int
        var complete: Bool
    }

    func validate() throws {
        guard accounts > 0, rounds > 0, latencyMs >= 0, pauseMs >= 0, activitySeconds > 0 else {
            throw ValidationError("--accounts, --rounds and --activity-seconds must be positive")
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
        let simulator = GitHubSimulator(configuration: simConfig, logger: quiet)
        try await simulator.start()
        let integration = GitHubIntegration(
            configuration: GitHubConfiguration(baseURL: simulator.baseURL), logger: quiet)
        let users = simulator.users
        var states: [String: JSONValue] = [:]
        var samples: [Sample] = []
        var busySeconds = 0.0

        for round in 1...rounds {
            let logMark = simulator.requests().count
            let quotaBefore = Dictionary(
                uniqueKeysWithValues: users.map { ($0.login, simulator.quotaUsed(token: $0.token)) })
            let roundStart = ContinuousClock.now
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
            let log = simulator.requests().dropFirst(logMark)
            var requestsByLogin: [String: Int] = [:]
            for entry in log { if let login = entry.login { requestsByLogin[login, default: 0] += 1 } }
            for (login, duration, outcome) in results {
                states[login] = outcome.state
                let token = users.first { $0.login == login }!.token
                samples.append(
                    Sample(
                        round: round, seconds: duration, requests: requestsByLogin[login] ?? 0,
                        quota: simulator.quotaUsed(token: token) - (quotaBefore[login] ?? 0),
                        activities: outcome.activities.count, complete: outcome.status == .complete))
            }
            if round < rounds { try await Task.sleep(for: .milliseconds(pauseMs)) }
        }
        await simulator.stop()
        report(samples, busySeconds: busySeconds)
    }

    private func report(_ samples: [Sample], busySeconds: Double) {
        let command =
            "activity-sync bench github --accounts \(accounts) --rounds \(rounds) --latency-ms \(latencyMs) "
            + "--pause-ms \(pauseMs) --activity-seconds \(activitySeconds) --seed \(seed)"
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
    }

    private func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let index = min(sorted.count - 1, max(0, Int((Double(sorted.count) * p).rounded(.up)) - 1))
        return sorted[index]
    }
}

private func seconds(_ duration: Duration) -> Double {
    duration.timeInterval
}
