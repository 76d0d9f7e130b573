import ActivitySyncTesting
import Foundation
import GitHubSimulator
import IntegrationCatalog
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
                for: user.login, type: "IssuesEvent", title: "Twenty days ago", at: now.addingTimeInterval(-20 * 86_400)
            )
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

    /// A subject in an organization that enforces SAML SSO answers 403 with `X-GitHub-SSO`; one that was deleted
    /// answers 404 or 410. Each notification still becomes an activity, from what it says itself and marked, and
    /// the SSO one says in the account's status what to do; the watermark moves on (no repeats).
    @Test(arguments: zip([403, 404, 410], [true, false, false]))
    func anUnavailableSubjectIsEmittedMarkedNotDropped(status: Int, sso: Bool) async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let repo = "locked-org/secret"
            try github.simulator.addNotification(
                for: user.login, reason: "mention", repo: repo, number: 42, title: "Quarterly plan", actor: "grace-sim",
                commentBody: "@\(user.login) please look", at: Date().addingTimeInterval(-60))
            github.simulator.refuseSubjects(in: repo, status: status, sso: sso)
            let first = try await github.sync(user, state: nil)
            let activity = try #require(first.activities.first { $0.repo == repo }, "not dropped")
            #expect(activity.detail == "subject_unavailable")
            #expect(activity.number == 42)
            #expect(activity.sourceURL == "https://github.com/\(repo)/issues/42")
            #expect(activity.kind == "mention")
            if sso {
                guard case .partial(let reason, _) = first.status else {
                    Issue.record("expected a status reason for SSO, got \(first.status)")
                    return
                }
                #expect(reason.contains("subject_unavailable"))
                #expect(reason.contains("SAML SSO"))
                #expect(reason.contains("https://github.com/orgs/locked-org/sso"))
            } else {
                #expect(first.isComplete, "\(first.status)")
            }
            let second = try await github.sync(user, state: first.state)
            #expect(!second.activities.contains { $0.id == activity.id }, "emitted once")
        }
    }

    /// GitHub App user and installation tokens and fine-grained PATs get 403 from `/notifications`: the status says
    /// exactly that, and the user's events still sync.
    @Test func aTokenThatMayNotReadNotificationsGetsAClearStatusAndEventsStillSync() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            try github.simulator.setTokenKind(.githubAppOrFineGrained, for: user.login)
            let event = try github.simulator.addEvent(for: user.login, type: "IssuesEvent", title: "Still synced")
            let outcome = try await github.sync(user, state: nil)
            guard case .partial(let reason, _) = outcome.status else {
                Issue.record("expected a status reason, got \(outcome.status)")
                return
            }
            #expect(reason.hasPrefix("notifications_unsupported_token"))
            #expect(reason.contains("Resource not accessible by integration"))
            #expect(outcome.activities.map(\.id).contains("github:event:\(event)"))
        }
    }

    /// `state_change` used to name the latest commenter (or the author), not who closed the issue or merged the pull
    /// request; GitHub says who: `closed_by` on the issue, `merged_by` on the pull request.
    @Test func aStateChangeNamesWhoClosedOrMerged() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let now = Date()
            try github.simulator.addNotification(
                for: user.login, reason: "state_change", repo: "octo/app", number: 7, title: "Flaky login",
                actor: "ada-sim", commentBody: "I can reproduce it", state: "closed", closedBy: "grace-sim",
                at: now.addingTimeInterval(-60))
            try github.simulator.addNotification(
                for: user.login, reason: "state_change", subjectType: "PullRequest", repo: "octo/app", number: 8,
                title: "Fix login", actor: "ada-sim", state: "closed", closedBy: "linus-sim",
                at: now.addingTimeInterval(-30))
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            let texts = Set(outcome.activities.map(\.text))
            #expect(texts.contains("grace-sim changed issue #7 state to closed in octo/app: Flaky login"))
            #expect(texts.contains("linus-sim changed PR #8 state to closed in octo/app: Fix login"))
            let truth = try github.simulator.truth(
                login: user.login, from: now.addingTimeInterval(-3_600), to: Date())
            let byId = Dictionary(uniqueKeysWithValues: outcome.activities.map { ($0.id, $0) })
            for expected in truth where expected.kind == "state_change" {
                expectActivity(try #require(byId[expected.id]), matches: expected)
            }
        }
    }

    /// GitHub's ETags differ per token. Two accounts synced by one process that share a subject must each keep their
    /// own validator: keyed by URL alone, each sync replaced the other's and paid a full request for an unchanged
    /// subject.
    @Test func accountsThatShareASubjectEachKeepTheirOwnValidator() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let (first, second) = (github.simulator.users[0], github.simulator.users[1])
            let at = Date().addingTimeInterval(-60)
            for user in [first, second] {
                try github.simulator.addNotification(
                    for: user.login, reason: "assign", subjectType: "PullRequest", repo: "octo/shared", number: 3,
                    title: "Shared work", at: at)
            }
            // A fresh state re-reads the window, so every round asks for the subject again.
            for user in [first, second] { _ = try await github.sync(user, state: nil) }
            let mark = github.simulator.requests().count
            for _ in 0..<2 {
                for user in [first, second] {
                    let outcome = try await github.sync(user, state: nil)
                    #expect(outcome.activities.contains { $0.repo == "octo/shared" })
                }
            }
            let subjectReads = github.simulator.requests().dropFirst(mark).filter {
                $0.path == "/repos/octo/shared/pulls/3"
            }
            #expect(subjectReads.count == 4)
            #expect(
                subjectReads.allSatisfy { $0.notModified && !$0.countedAgainstQuota }, "\(subjectReads.map(\.status))")
        }
    }

    /// A thread's reason sticks: a comment on an assigned issue is listed again with reason `assign`, and one on a
    /// thread that once mentioned the user with `mention`. Each such version is the comment, told as one; the
    /// reason's template stays with the version it describes.
    @Test func aCommentOnAThreadWithAStickyReasonIsToldAsAComment() async throws {
        try await SimulatedGitHub.with({
            $0.historyItems = 0
            $0.threadBumps = true
        }) { github in
            let user = github.user
            let now = Date()
            let assigned = try github.simulator.addNotification(
                for: user.login, reason: "assign", repo: "octo/app", number: 21, title: "Slow start",
                at: now.addingTimeInterval(-120))
            let mentioned = try github.simulator.addNotification(
                for: user.login, reason: "mention", repo: "octo/app", number: 22, title: "Crash", actor: "ada-sim",
                commentBody: "@\(user.login) can you look?", at: now.addingTimeInterval(-110))
            let first = try await github.sync(user, state: nil)
            #expect(
                first.activities.map(\.text).contains("Issue #21 assigned to \(user.login) in octo/app: Slow start"))
            #expect(
                first.activities.map(\.text).contains(
                    "ada-sim mentioned \(user.login) in octo/app issue #22: @\(user.login) can you look?"))
            try github.simulator.touchThread(
                assigned, at: now.addingTimeInterval(-60), commentBody: "Any news?", actor: "grace-sim")
            try github.simulator.touchThread(
                mentioned, at: now.addingTimeInterval(-50), commentBody: "Fixed on main.", actor: "linus-sim")
            let second = try await github.sync(user, state: first.state)
            let texts = second.activities.map(\.text)
            #expect(texts.contains("grace-sim commented on issue #21 in octo/app: Any news?"), "\(texts)")
            #expect(texts.contains("linus-sim commented on issue #22 in octo/app: Fixed on main."), "\(texts)")
            #expect(second.activities.allSatisfy { $0.kind == "comment" })
            let truth = try github.simulator.truth(
                login: user.login, from: now.addingTimeInterval(-3_600), to: Date())
            let byId = Dictionary(uniqueKeysWithValues: (first.activities + second.activities).map { ($0.id, $0) })
            #expect(Set(byId.keys) == Set(truth.map(\.id)))
            for expected in truth { expectActivity(try #require(byId[expected.id]), matches: expected) }
        }
    }

    /// The user's own review (`PullRequestReviewEvent`, a trimmed pull request in its payload since 2025-10-07)
    /// is an activity like their comments, linked to the review.
    @Test func theUsersOwnReviewIsAnActivity() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let review = try github.simulator.addEvent(
                for: user.login, type: "PullRequestReviewEvent", repo: "octo/app", number: 31, title: "Cache keys",
                commentBody: "Looks good, one nit.")
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            let activity = try #require(outcome.activities.first { $0.id == "github:event:\(review)" })
            #expect(activity.kind == "pr_review")
            #expect(activity.text == "\(user.login) reviewed PR #31: Cache keys")
            #expect(activity.sourceURL == "https://github.com/octo/app/pull/31")
            #expect(activity.commentURL?.hasPrefix("https://github.com/octo/app/pull/31#pullrequestreview-") == true)
            let truth = try github.simulator.truth(
                login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            expectActivity(activity, matches: try #require(truth.first { $0.id == activity.id }))
        }
    }

    /// Release and Commit threads with a kept reason (the user's release, a mention in a commit) were dropped. They
    /// are activities now, from what the notification says, linked to the releases page or the commit; nothing is
    /// fetched for them.
    @Test func releaseAndCommitThreadsWithAKeptReasonAreActivities() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let now = Date()
            try github.simulator.addNotification(
                for: user.login, reason: "author", subjectType: "Release", repo: "octo/app", title: "v2.0.0",
                at: now.addingTimeInterval(-60))
            try github.simulator.addNotification(
                for: user.login, reason: "mention", subjectType: "Commit", repo: "octo/app", title: "Speed up sync",
                at: now.addingTimeInterval(-50))
            try github.simulator.addNotification(
                for: user.login, reason: "subscribed", subjectType: "Release", repo: "octo/app", title: "v1.9.0",
                at: now.addingTimeInterval(-40))
            let mark = github.simulator.requests().count
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            let release = try #require(outcome.activities.first { $0.kind == "author" })
            #expect(release.text == "GitHub notification for \(user.login) in octo/app release: v2.0.0")
            #expect(release.sourceURL == "https://github.com/octo/app/releases")
            let commit = try #require(outcome.activities.first { $0.kind == "mention" })
            #expect(commit.text == "GitHub notification for \(user.login) in octo/app commit: Speed up sync")
            #expect(commit.sourceURL.hasPrefix("https://github.com/octo/app/commit/"))
            #expect(outcome.activities.count == 2, "subscribed stays noise")
            let truth = try github.simulator.truth(
                login: user.login, from: now.addingTimeInterval(-3_600), to: Date())
            #expect(Set(truth.map(\.id)) == Set(outcome.activities.map(\.id)))
            for expected in truth {
                expectActivity(try #require(outcome.activities.first { $0.id == expected.id }), matches: expected)
            }
            let asked = github.requests(of: user.login, since: mark).map(\.path)
            #expect(!asked.contains { $0.contains("/releases") || $0.contains("/commits") })
        }
    }

    /// `latest_comment_url` names the subject's newest comment when GitHub is polled, not the comment that made the
    /// thread's version: the user replies within minutes, and the activity said "user commented … <their own
    /// reply>" while the other person's comment was lost. The version's own comment comes from the subject's list.
    @Test func theCommentThatMadeAVersionIsToldEvenAfterTheUserReplied() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let now = Date()
            try github.simulator.addNotification(
                for: user.login, reason: "comment", repo: "octo/app", number: 41, title: "Deploy failed",
                actor: "ada-sim", commentBody: "Can you check the logs?", at: now.addingTimeInterval(-120))
            // The user's own reply notifies nobody, but moves the thread's latest_comment_url.
            try github.simulator.addEvent(
                for: user.login, type: "IssueCommentEvent", repo: "octo/app", number: 41,
                commentBody: "Logs attached.", at: now.addingTimeInterval(-60))
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            let texts = outcome.activities.map(\.text)
            #expect(texts.contains("ada-sim commented on issue #41 in octo/app: Can you check the logs?"), "\(texts)")
            #expect(!texts.contains { $0.hasSuffix("Logs attached.") && $0.contains("in octo/app") })
            let truth = try github.simulator.truth(
                login: user.login, from: now.addingTimeInterval(-3_600), to: Date())
            #expect(Set(truth.map(\.id)) == Set(outcome.activities.map(\.id)))
            for expected in truth {
                expectActivity(try #require(outcome.activities.first { $0.id == expected.id }), matches: expected)
            }
        }
    }

    /// A `DiscussionEvent` (a type GitHub added in 2025) among the events is read and left alone: the page still
    /// yields the other events, and the sync is complete.
    @Test func aDiscussionEventAmongTheEventsIsNoise() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let issue = try github.simulator.addEvent(
                for: user.login, type: "IssuesEvent", repo: "octo/app", title: "Before",
                at: Date().addingTimeInterval(-20))
            try github.simulator.addEvent(
                for: user.login, type: "DiscussionEvent", repo: "octo/app", title: "Ideas for 2027",
                at: Date().addingTimeInterval(-10))
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            #expect(outcome.activities.map(\.id).contains("github:event:\(issue)"))
            #expect(!outcome.activities.contains { $0.text.contains("Ideas for 2027") })
        }
    }

    /// The refusal is about the token's type and will not pass by itself: later syncs keep the clear status without
    /// asking `/notifications` again (no quota), and still sync the events, until a day has passed.
    @Test func aRefusedTokenIsNotAskedForNotificationsEverySync() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            try github.simulator.setTokenKind(.githubAppOrFineGrained, for: user.login)
            let first = try await github.sync(user, state: nil)
            let mark = github.simulator.requests().count
            let event = try github.simulator.addEvent(for: user.login, type: "IssuesEvent", title: "Later")
            let second = try await github.sync(user, state: first.state)
            guard case .partial(let reason, _) = second.status else {
                Issue.record("expected a status reason, got \(second.status)")
                return
            }
            #expect(reason.hasPrefix("notifications_unsupported_token"))
            #expect(second.activities.map(\.id) == ["github:event:\(event)"], "\(second.status)")
            let asked = github.requests(of: user.login, since: mark).map(\.path)
            #expect(!asked.contains("/notifications"), "\(asked)")
        }
    }
}
