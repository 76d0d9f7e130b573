import ActivitySyncTesting
import Foundation
import GitHubSimulator
import SyncModel
import Testing

@testable import GitHub

/// Issue 17: habits of GitHub's live API since 2025 that lost or mislabelled activities, on the simulator's defaults
/// (which model them).
@Suite("GitHub as it serves today", .timeLimit(.minutes(2)))
struct TodaysGitHubTests {
    /// GitHub keeps 30 days of events since 2025-01-30 (90 before): an account not synced for 45 days lost the
    /// events between its watermark and 30 days ago, and its state must say so.
    @Test func anAccountPausedLongerThanTheEventsWindowGetsAGapMarker() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let now = Date()
            let gone = try github.simulator.addEvent(
                for: user.login, type: "IssuesEvent", title: "Forty days ago", at: now.addingTimeInterval(-40 * 86_400))
            let kept = try github.simulator.addEvent(
                for: user.login, type: "IssuesEvent", title: "Twenty days ago", at: now.addingTimeInterval(-20 * 86_400))
            let pausedAt = now.addingTimeInterval(-45 * 86_400)
            let paused = GitHubState(
                lastSyncTime: pausedAt, lastUserEventTime: pausedAt, username: user.login, eventIds: [])
            let outcome = try await github.sync(user, state: paused.json)
            let ids = outcome.activities.map(\.id)
            #expect(ids.contains("github:event:\(kept)"))
            #expect(!ids.contains("github:event:\(gone)"), "GitHub no longer serves it")
            let gap = try #require(outcome.githubState.gaps.first { $0.source == "events" }, "a gap marker")
            #expect(abs(gap.from.timeIntervalSince(pausedAt)) < 1)
            #expect(abs(gap.to.timeIntervalSince(now.addingTimeInterval(-30 * 86_400))) < 120)
        }
    }

    /// A first sync whose watermark is inside the window records no gap.
    @Test func anAccountSyncedWithinTheWindowGetsNoGap() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let now = Date()
            let kept = try github.simulator.addEvent(
                for: user.login, type: "IssuesEvent", title: "Ten days ago", at: now.addingTimeInterval(-10 * 86_400))
            let since = now.addingTimeInterval(-20 * 86_400)
            let state = GitHubState(lastSyncTime: since, lastUserEventTime: since, username: user.login, eventIds: [])
            let outcome = try await github.sync(user, state: state.json)
            #expect(outcome.activities.map(\.id).contains("github:event:\(kept)"))
            #expect(outcome.githubState.gaps.isEmpty)
        }
    }
}
