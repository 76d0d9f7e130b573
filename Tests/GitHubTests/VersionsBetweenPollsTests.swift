import ActivitySyncTesting
import Foundation
import GitHubSimulator
import IntegrationCatalog
import SyncModel
import Synchronization
import Testing

@testable import GitHub

/// GitHub lists only a thread's newest version (issue 17, Build 4): the versions between two polls come from the
/// subject's comments and `closed_at`, with the ids GitHub's listing would have given them, each once.
@Suite("Thread versions between polls", .timeLimit(.minutes(2)))
struct VersionsBetweenPollsTests {
    /// Waits until the wall clock is in a later second than `date`'s, so the next thread version (whole seconds) and
    /// the next listing's `before` (whole seconds, exclusive) come after it.
    private func pastSecond(of date: Date) async throws {
        try await eventually("the clock passed a second", timeout: .seconds(5), interval: .milliseconds(20)) {
            Date().timeIntervalSince1970 >= date.timeIntervalSince1970.rounded(.down) + 1.05
        }
    }

    private func expectExactly(
        _ emitted: [Activity], are expected: [ExpectedActivity], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(emitted.map(\.id).sorted() == expected.map(\.id).sorted(), sourceLocation: sourceLocation)
        let byId = Dictionary(emitted.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for version in expected {
            guard let activity = byId[version.id] else { continue }
            expectActivity(activity, matches: version, sourceLocation: sourceLocation)
        }
    }

    private func expectMatchesPolledTruth(
        _ emitted: [Activity], _ truth: PolledTruth, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let ids = emitted.map(\.id)
        #expect(Set(ids).count == ids.count, "an id repeats", sourceLocation: sourceLocation)
        let missing = Set(truth.required.map(\.id)).subtracting(ids)
        #expect(missing.isEmpty, "lost: \(missing.sorted())", sourceLocation: sourceLocation)
        let unseen = Set(ids).subtracting(truth.seen.map(\.id))
        #expect(unseen.isEmpty, "never seen: \(unseen.sorted())", sourceLocation: sourceLocation)
    }

    @Test func aVersionMadeAfterAListingBeganAndSupersededBeforeTheNextIsEmitted() async throws {
        try await SimulatedGitHub.with({
            $0.historyItems = 0
            $0.threadBumps = true
        }) { github in
            let user = github.user
            let simulator = github.simulator
            let start = Date()
            let thread = try simulator.addNotification(
                for: user.login, reason: "assign", repo: "octo/app", title: "Busy issue",
                at: start.addingTimeInterval(-60))
            let first = try await github.sync(user, state: nil)
            #expect(first.activities.count == 1)
            // Something that is no activity changes the list, so the second sync reads a page (not a 304).
            try simulator.addNotification(for: user.login, reason: "subscribed", repo: "octo/app", title: "New issue")
            // While the second sync lists (after its page was made, so after its `before`): a comment makes a new
            // version of the thread, and someone closes another issue, which notifies the user (a new thread).
            let closed = Mutex<String?>(nil)
            let touchedAt = Mutex<Date?>(nil)
            try simulator.afterNotificationPages(1, for: user.login) {
                let now = Date()
                touchedAt.withLock { $0 = now }
                try? simulator.touchThread(thread, at: now, commentBody: "I can reproduce this.", actor: "grace-sim")
                let id = try? simulator.addNotification(
                    for: user.login, reason: "state_change", repo: "octo/app", title: "Flaky test", state: "closed",
                    closedBy: "linus-sim", at: now)
                closed.withLock { $0 = id }
            }
            let second = try await github.sync(user, state: first.state)
            #expect(second.activities.isEmpty, "both came after the listing's `before`")
            let madeAt = try #require(touchedAt.withLock { $0 })
            let closedThread = try #require(closed.withLock { $0 })
            // Both move on again before the next poll: GitHub lists only the newest versions.
            try await pastSecond(of: madeAt)
            let movedAt = Date()
            try simulator.touchThread(thread, at: movedAt, commentBody: "Fixed on main.", actor: "ada-sim")
            try simulator.touchThread(
                closedThread, at: movedAt, commentBody: "Reopen if it comes back.", actor: "ada-sim")
            try await pastSecond(of: movedAt)
            let third = try await github.sync(user, state: second.state)
            #expect(third.isComplete)

            let truth = try simulator.truth(login: user.login, from: start.addingTimeInterval(-120), to: Date())
            let versions = truth.filter { $0.occurredAt >= madeAt.addingTimeInterval(-1) }
            #expect(versions.count == 4, "two versions of each thread since the second sync began")
            #expect(versions.filter { $0.supersededAt != nil }.count == 2)
            expectExactly(third.activities, are: versions)
            let stateChange = try #require(third.activities.first { $0.kind == "state_change" })
            #expect(stateChange.text.hasPrefix("linus-sim changed issue #"), "who closed it: \(stateChange.text)")
            #expect(third.activities.contains { $0.text.hasPrefix("grace-sim commented on issue #") })
            expectMatchesPolledTruth(
                first.activities + second.activities + third.activities,
                try simulator.polledTruth(login: user.login, from: start.addingTimeInterval(-120), to: Date()))
        }
    }

    @Test func aRerunAfterItsOutputWasRolledBackEmitsEveryVersionSinceItsStateOnce() async throws {
        try await SimulatedGitHub.with({
            $0.historyItems = 0
            $0.threadBumps = true
        }) { github in
            let user = github.user
            let simulator = github.simulator
            let start = Date()
            let thread = try simulator.addNotification(
                for: user.login, reason: "assign", subjectType: "PullRequest", repo: "octo/app", title: "Cache layer",
                at: start.addingTimeInterval(-60))
            let committed = try await github.sync(user, state: nil)
            #expect(committed.activities.count == 1)
            try await pastSecond(of: start)
            let secondAt = Date()
            try simulator.touchThread(
                thread, at: secondAt, commentBody: "Rebased on the latest main.", actor: "grace-sim")
            try await pastSecond(of: secondAt)
            // A job runs, is handed the new version, and its output is rolled back (its transaction aborted).
            let aborted = try await github.sync(user, state: committed.state)
            #expect(aborted.activities.count == 1)
            // Meanwhile the thread moves on, twice; the job runs again from the committed state.
            let thirdAt = Date()
            try simulator.touchThread(
                thread, at: thirdAt, commentBody: "@\(user.login) can you take a look?", actor: "ada-sim",
                reason: "mention")
            try await pastSecond(of: thirdAt)
            let fourthAt = Date()
            try simulator.touchThread(
                thread, at: fourthAt, commentBody: "Merging once CI is green.", actor: "linus-sim")
            try await pastSecond(of: fourthAt)
            let mark = simulator.requests().count
            let rerun = try await github.sync(user, state: committed.state)
            #expect(rerun.isComplete)
            let truth = try simulator.truth(login: user.login, from: start.addingTimeInterval(-120), to: Date())
            let since = truth.filter { $0.occurredAt >= secondAt.addingTimeInterval(-1) }
            #expect(since.count == 3)
            expectExactly(rerun.activities, are: since)
            #expect(Set(aborted.activities.map(\.id)).isSubset(of: rerun.activities.map(\.id)))
            #expect(rerun.activities.contains { $0.kind == "mention" && $0.text.hasPrefix("ada-sim mentioned") })
            // What it cost beyond the listing, the pull request and its newest comment: one comment list (the pull
            // request has no review comments, so that list is not read).
            let requests = github.requests(of: user.login, since: mark)
            #expect(requests.filter { $0.path.hasSuffix("/comments") }.count == 1, "\(requests.map(\.path))")

            let next = try await github.sync(user, state: rerun.state)
            #expect(next.activities.isEmpty, "nothing twice")
            expectMatchesPolledTruth(
                committed.activities + rerun.activities + next.activities,
                try simulator.polledTruth(login: user.login, from: start.addingTimeInterval(-120), to: Date()))
        }
    }

    @Test func commentsFromBeforeTheLastListingAreNotToldAsVersionsOfAThreadNotifiedOnlyNow() async throws {
        try await SimulatedGitHub.with({
            $0.historyItems = 0
            $0.threadBumps = true
            $0.users = 2
        }) { github in
            let user = github.user
            let other = github.simulator.users[1]
            let simulator = github.simulator
            let start = Date()
            let first = try await github.sync(user, state: nil)
            // Someone comments on an issue the user is not subscribed to (it notifies another account only).
            try await pastSecond(of: start)
            let commentedAt = Date()
            try simulator.addNotification(
                for: other.login, reason: "comment", repo: "octo/app", number: 7, title: "Long thread",
                actor: "grace-sim", commentBody: "Any news?", at: commentedAt)
            try await pastSecond(of: commentedAt)
            let second = try await github.sync(user, state: first.state)
            #expect(second.activities.isEmpty)
            // Then the user is mentioned there: their first notification about it.
            try await pastSecond(of: Date())
            let mentionedAt = Date()
            let thread = try simulator.addNotification(
                for: user.login, reason: "mention", repo: "octo/app", number: 7, actor: "ada-sim",
                commentBody: "@\(user.login) could you look?", at: mentionedAt)
            try await pastSecond(of: mentionedAt)
            let third = try await github.sync(user, state: second.state)
            #expect(third.activities.map(\.id).count == 1)
            #expect(third.activities.allSatisfy { $0.id.hasPrefix("github:notification:\(thread):") })
            #expect(third.activities.first?.kind == "mention")
            expectMatchesPolledTruth(
                first.activities + second.activities + third.activities,
                try simulator.polledTruth(login: user.login, from: start.addingTimeInterval(-120), to: Date()))
        }
    }
}
