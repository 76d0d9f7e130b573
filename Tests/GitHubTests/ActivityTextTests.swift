import Foundation
import SyncModel
import Testing

@testable import GitHub

/// The texts, word for word, for issue and pull-request subjects (issue 3 is the authority).
@Suite("Activity texts")
struct ActivityTextTests {
    private func text(_ reason: String, pr: Bool, state: String? = "open") -> String? {
        ActivityText.notification(
            .init(
                reason: reason, isPullRequest: pr, username: "mona", repo: "octo/app", number: 7, title: "Fix it",
                state: state, actor: "hubot", body: "Looks good"))
    }

    @Test func issueSubjects() {
        #expect(text("assign", pr: false) == "Issue #7 assigned to mona in octo/app: Fix it")
        #expect(text("review_requested", pr: false) == "mona requested to review PR #7 in octo/app: Fix it")
        #expect(text("mention", pr: false) == "hubot mentioned mona in octo/app issue #7: Looks good")
        #expect(text("comment", pr: false) == "hubot commented on issue #7 in octo/app: Looks good")
        #expect(text("state_change", pr: false, state: "closed") == "hubot changed issue #7 state to closed in octo/app: Fix it")
        #expect(text("author", pr: false) == "GitHub notification for mona in octo/app")
        #expect(text("team_mention", pr: false) == "GitHub notification for mona in octo/app")
    }

    @Test func pullRequestSubjects() {
        #expect(text("assign", pr: true) == "PR #7 assigned to mona in octo/app: Fix it")
        #expect(text("review_requested", pr: true) == "mona requested to review PR #7 in octo/app: Fix it")
        #expect(text("mention", pr: true) == "hubot mentioned mona in octo/app PR #7: Looks good")
        #expect(text("comment", pr: true) == "hubot commented on PR #7 in octo/app: Looks good")
        #expect(text("state_change", pr: true, state: "closed") == "hubot changed PR #7 state to closed in octo/app: Fix it")
        #expect(text("author", pr: true) == "GitHub notification for mona in octo/app")
    }

    @Test func stateChangeWithoutStateKeepsTheReferenceQuirk() {
        #expect(text("state_change", pr: false, state: nil) == "hubot changed issue #7 state  in octo/app: Fix it")
    }

    @Test func noiseIsNotAnActivity() {
        #expect(text("subscribed", pr: false) == nil)
        #expect(text("ci_activity", pr: true) == nil)
        #expect(ActivityText.isPullRequest(subjectType: "Release") == nil)
        #expect(ActivityText.isPullRequest(subjectType: "Discussion") == nil)
        #expect(ActivityText.isPullRequest(subjectType: "CheckSuite") == nil)
    }

    @Test func eventTexts() {
        #expect(ActivityText.event(kind: "pr_opened", username: "mona", number: 3, title: "T") == "mona created PR #3: T")
        #expect(ActivityText.event(kind: "issue_opened", username: "mona", number: 3, title: "T") == "mona created issue #3: T")
        #expect(ActivityText.event(kind: "pr_comment", username: "mona", number: 3, title: "T") == "mona commented on PR #3: T")
        #expect(ActivityText.event(kind: "issue_comment", username: "mona", number: 3, title: "T") == "mona commented on issue #3: T")
    }

    @Test func stateRoundTripsAndReadsReferenceStates() throws {
        let reference: JSONValue = ["lastSyncTime": "2026-11-30T10:00:00Z", "lastUserEventTime": "2026-11-30T09:00:00Z", "username": "mona"]
        let state = try GitHubState(json: reference)
        #expect(state.username == "mona")
        #expect(state.lastSyncTime == WireFormat.parseDate("2026-11-30T10:00:00Z"))
        #expect(state.recentIds.isEmpty && state.gaps.isEmpty && !state.needsReauth)
        var full = state
        full.gaps = [.init(from: Date(timeIntervalSince1970: 0), to: Date(timeIntervalSince1970: 60), source: "events")]
        full.recentIds = ["a", "b"]
        full.eventsETag = "\"x\""
        #expect(try GitHubState(json: full.json) == full)
        #expect(try GitHubState(json: nil) == GitHubState())
    }

    @Test func recentIdsAreBounded() {
        var recent = RecentIds([], limit: 3)
        for id in ["a", "b", "c", "d"] { recent.insert(id) }
        #expect(recent.ids == ["b", "c", "d"])
        #expect(!recent.contains("a"))
        recent.insert("c")
        #expect(recent.ids == ["b", "c", "d"])
    }

    @Test func specMatchesTheReference() {
        let spec = GitHubIntegration(logger: .init(label: "test")).spec()
        #expect(spec["name"] == "GitHub extension")
        #expect(spec["key"] == "github")
        #expect(spec["schedule"]?["frequency"] == "*/5 * * * *")
        let oauth = spec["auth"]?["OAuth2"]
        #expect(oauth?["token_url"] == "https://github.com/login/oauth/access_token")
        #expect(oauth?["authorization_url"] == "https://github.com/login/oauth/authorize")
        #expect(oauth?["scopes"] == ["user", "public_repo", "repo", "notifications", "read:org"])
        #expect(oauth?["scope_separator"] == ",")
        #expect(spec["mcp"]?["type"] == "http")
        #expect(spec["mcp"]?["headers"]?["Authorization"] == "Bearer ${config:access_token}")
    }
}
