import ActivitySyncTesting
import Foundation
import SyncModel
import Synchronization
import Testing

@testable import GitHub
import Logging

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
        #expect(
            text("state_change", pr: false, state: "closed")
                == "hubot changed issue #7 state to closed in octo/app: Fix it")
        #expect(text("author", pr: false) == "GitHub notification for mona in octo/app")
        #expect(text("team_mention", pr: false) == "GitHub notification for mona in octo/app")
    }

    @Test func pullRequestSubjects() {
        #expect(text("assign", pr: true) == "PR #7 assigned to mona in octo/app: Fix it")
        #expect(text("review_requested", pr: true) == "mona requested to review PR #7 in octo/app: Fix it")
        #expect(text("mention", pr: true) == "hubot mentioned mona in octo/app PR #7: Looks good")
        #expect(text("comment", pr: true) == "hubot commented on PR #7 in octo/app: Looks good")
        #expect(
            text("state_change", pr: true, state: "closed") == "hubot changed PR #7 state to closed in octo/app: Fix it"
        )
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
        #expect(
            ActivityText.event(kind: "pr_opened", username: "mona", number: 3, title: "T") == "mona created PR #3: T")
        #expect(
            ActivityText.event(kind: "issue_opened", username: "mona", number: 3, title: "T")
                == "mona created issue #3: T")
        #expect(
            ActivityText.event(kind: "pr_comment", username: "mona", number: 3, title: "T")
                == "mona commented on PR #3: T")
        #expect(
            ActivityText.event(kind: "issue_comment", username: "mona", number: 3, title: "T")
                == "mona commented on issue #3: T")
    }

    @Test func stateRoundTripsAndReadsReferenceStates() throws {
        let reference: JSONValue = [
            "lastSyncTime": "2026-11-30T10:00:00Z", "lastUserEventTime": "2026-11-30T09:00:00Z", "username": "mona",
        ]
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

/// The process-wide pieces of the client, without I/O.
@Suite("GitHub client internals")
struct ClientInternalsTests {
    @Test func limiterNeverExceedsPerTokenOrGlobalLimits() async throws {
        let limiter = RequestLimiter(perKeyLimit: 2, globalLimit: 3)
        let peaks = Peaks()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<40 {
                let key = index % 2 == 0 ? "a" : "b"
                group.addTask {
                    try await limiter.withSlot(key: key) {
                        peaks.enter(key)
                        try await Task.sleep(for: .milliseconds(2))
                        peaks.leave(key)
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(peaks.maxPerKey <= 2)
        #expect(peaks.maxGlobal <= 3)
        #expect(peaks.maxGlobal >= 2)
        #expect(limiter.inFlight == 0)
    }

    @Test func cancelledWaiterLeavesTheQueue() async throws {
        let limiter = RequestLimiter(perKeyLimit: 1, globalLimit: 1)
        try await limiter.acquire(key: "a")
        let waiter = Task { try await limiter.acquire(key: "a") }
        try await eventually("the second acquire queued") { limiter.waiting == 1 }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(limiter.waiting == 0)
        limiter.release(key: "a")
        try await limiter.withSlot(key: "a") {}
        #expect(limiter.inFlight == 0)
    }

    @Test func subjectCacheIsBoundedAndKeepsRecentlyUsed() {
        let cache = SubjectCache(capacity: 10)
        let comment = GitHubComment(id: 1, body: "b")
        for index in 0..<10 { cache.put("u\(index)", .init(etag: "e\(index)", body: .comment(comment))) }
        _ = cache.get("u0")  // recently used: survives eviction
        for index in 10..<15 { cache.put("u\(index)", .init(etag: "e\(index)", body: .comment(comment))) }
        #expect(cache.count <= 10)
        #expect(cache.get("u0")?.etag == "e0")
        #expect(cache.get("u14")?.etag == "e14")
        #expect(cache.get("u1") == nil)
    }

    @Test func budgetStopsAtZeroUntilReset() {
        let budgets = RateLimitBudgets()
        let now = Date()
        #expect(budgets.reserve(key: "t", now: now) == nil)
        budgets.record(key: "t", RateLimitInfo(remaining: 1, reset: now.addingTimeInterval(60)))
        #expect(budgets.reserve(key: "t", now: now) == nil)  // the last one
        #expect(budgets.reserve(key: "t", now: now) == now.addingTimeInterval(60))  // none left while one is in flight
        #expect(budgets.reserve(key: "t", now: now.addingTimeInterval(61)) == nil)  // after the reset
    }

    @Test func tokenURLFollowsTheAPIOrigin() {
        #expect(GitHubConfiguration().effectiveTokenURL == "https://github.com/login/oauth/access_token")
        #expect(
            GitHubConfiguration(baseURL: "http://127.0.0.1:9/").effectiveTokenURL
                == "http://127.0.0.1:9/login/oauth/access_token")
    }

    @Test func graphQLGoesToTheConfiguredHostOnly() {
        #expect(GitHubConfiguration().graphQLURL == "https://api.github.com/graphql")
        #expect(GitHubConfiguration(baseURL: "http://127.0.0.1:9/").graphQLURL == "http://127.0.0.1:9/graphql")
        #expect(
            GitHubConfiguration(baseURL: "https://ghe.example.com/api/v3").graphQLURL
                == "https://ghe.example.com/api/graphql")
        let client = GitHubClient(
            configuration: GitHubConfiguration(baseURL: "https://ghe.example.com/api/v3"), logger: SimulatedGitHub.quiet
        )
        #expect(client.isAPIOrigin(client.configuration.graphQLURL), "the origin guard lets it through")
    }
}

/// Counts concurrent holders (the test's own bookkeeping, guarded by a lock).
private final class Peaks: Sendable {
    private struct Counts {
        var perKey: [String: Int] = [:]
        var global = 0
        var maxPerKey = 0
        var maxGlobal = 0
    }

    private let counts = Mutex(Counts())

    func enter(_ key: String) {
        counts.withLock {
            $0.perKey[key, default: 0] += 1
            $0.global += 1
            $0.maxPerKey = max($0.maxPerKey, $0.perKey[key]!)
            $0.maxGlobal = max($0.maxGlobal, $0.global)
        }
    }

    func leave(_ key: String) {
        counts.withLock {
            $0.perKey[key, default: 0] -= 1
            $0.global -= 1
        }
    }

    var maxPerKey: Int { counts.withLock { $0.maxPerKey } }
    var maxGlobal: Int { counts.withLock { $0.maxGlobal } }
}
