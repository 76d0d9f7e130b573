import Foundation
import GitHubSimulator
import IntegrationCatalog
import SyncModel
import Testing

@testable import GitHub

/// The busy-world measurement of issue 17 (Build 4): many accounts, a new item every 0.3 s each, one notifications
/// poll a minute (`X-Poll-Interval: 60`), thread re-bumps on. Prints how many thread versions polls could see were
/// never emitted. Long (BUSY_WORLD_SECONDS, e.g. 150), so it runs only when that is set; docs/benchmarks.md has the
/// command and the numbers.
@Suite(
    "Busy-world measurement", .timeLimit(.minutes(15)),
    .enabled(if: BusyWorld.seconds != nil, "set BUSY_WORLD_SECONDS (e.g. 150) to run it"))
struct BusyWorldMeasurement {
    @Test func versionsAPollCouldSeeThatWereNeverEmitted() async throws {
        let duration = try #require(BusyWorld.seconds)
        let accounts = BusyWorld.accounts
        try await SimulatedGitHub.with({
            $0.users = accounts
            $0.pollInterval = 60
            $0.threadBumps = true
            $0.activityInterval = .milliseconds(300)
            $0.historyItems = 60
            $0.latency = .milliseconds(10)
            $0.quotaPerHour = 1_000_000
        }) { github in
            let start = Date()
            let end = start.addingTimeInterval(duration)
            let simulator = github.simulator
            // Every account syncs about once a second; X-Poll-Interval makes most of those skip the listing.
            let emitted = await withTaskGroup(of: (String, [Activity]).self) { group in
                for user in simulator.users {
                    group.addTask {
                        var state: JSONValue?
                        var activities: [Activity] = []
                        while Date() < end {
                            if let outcome = try? await github.sync(user, state: state) {
                                activities += outcome.activities
                                state = outcome.state
                            }
                            try? await Task.sleep(for: .seconds(1))
                        }
                        return (user.login, activities)
                    }
                }
                var all: [String: [Activity]] = [:]
                for await (login, activities) in group { all[login] = activities }
                return all
            }
            // Counted over the versions made while the syncs ran (the first sync's 24 h window holds history no poll
            // saw being made), and over all.
            var seen = (live: 0, all: 0)
            var required = (live: 0, all: 0)
            var lostSeen: (live: [String], all: [String]) = ([], [])
            var lostRequired: (live: [String], all: [String]) = ([], [])
            var repeats = 0
            var emittedVersions = 0
            for user in simulator.users {
                let ids = (emitted[user.login] ?? []).map(\.id).filter { $0.hasPrefix("github:notification:") }
                emittedVersions += ids.count
                repeats += ids.count - Set(ids).count
                let truth = try simulator.polledTruth(
                    login: user.login, from: start.addingTimeInterval(-86_400), to: Date())
                let versions = { (list: [ExpectedActivity]) -> (live: Set<String>, all: Set<String>) in
                    let notifications = list.filter { $0.id.hasPrefix("github:notification:") }
                    return (
                        Set(notifications.filter { $0.occurredAt >= start }.map(\.id)), Set(notifications.map(\.id))
                    )
                }
                let seenIds = versions(truth.seen)
                let requiredIds = versions(truth.required)
                seen.live += seenIds.live.count
                seen.all += seenIds.all.count
                required.live += requiredIds.live.count
                required.all += requiredIds.all.count
                lostSeen.live += seenIds.live.subtracting(ids)
                lostSeen.all += seenIds.all.subtracting(ids)
                lostRequired.live += requiredIds.live.subtracting(ids)
                lostRequired.all += requiredIds.all.subtracting(ids)
            }
            let quota = simulator.users.map { simulator.quotaUsed(token: $0.token) }.reduce(0, +)
            print(
                "busy world: \(accounts) accounts, \(Int(duration)) s, poll interval 60 s, quota used \(quota) "
                    + "(\(String(format: "%.1f", Double(quota) / Double(accounts) / (duration / 60))) per account-minute), "
                    + "\(emittedVersions) thread versions emitted, \(repeats) repeats. Made during the run: \(seen.live) seen by a poll, "
                    + "\(required.live) required; \(lostSeen.live.count) seen and \(lostRequired.live.count) required never emitted. "
                    + "With the first sync's window: \(seen.all) seen, \(required.all) required; \(lostSeen.all.count) seen "
                    + "and \(lostRequired.all.count) required never emitted. Lost sample: \(lostSeen.live.sorted().prefix(5))"
            )
            #expect(repeats == 0)
        }
    }
}

enum BusyWorld {
    static var seconds: Double? {
        ProcessInfo.processInfo.environment["BUSY_WORLD_SECONDS"].flatMap(Double.init)
    }

    static var accounts: Int {
        ProcessInfo.processInfo.environment["BUSY_WORLD_ACCOUNTS"].flatMap(Int.init) ?? 20
    }
}
