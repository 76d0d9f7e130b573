import ActivitySyncTesting
import Foundation
import GitHubSimulator
import Testing
import NIOHTTP1

private let keptKinds: Set<String> = [
    "assign", "review_requested", "mention", "state_change", "author", "comment", "team_mention", "pr_opened",
    "issue_opened", "pr_comment", "issue_comment", "pr_review",
]

@Suite("World", .timeLimit(.minutes(1)))
struct WorldTests {
    private func configuration(seed: UInt64, start: Date) -> SimulatorConfiguration {
        var configuration = SimulatorConfiguration()
        configuration.seed = seed
        configuration.users = 5
        configuration.start = start
        return configuration
    }

    @Test("the same seed gives the same history and ground truth; another seed gives another")
    func determinism() throws {
        let start = Date().addingTimeInterval(-120)
        let from = start.addingTimeInterval(-13 * 3_600)
        let first = GitHubSimulator(configuration: configuration(seed: 7, start: start))
        let second = GitHubSimulator(configuration: configuration(seed: 7, start: start))
        let other = GitHubSimulator(configuration: configuration(seed: 8, start: start))
        // Ask in a different order: lazily generated worlds must not depend on who is asked first.
        let a = try first.truth(login: "user3", from: from, to: start)
        _ = try second.truth(login: "user1", from: from, to: start)
        let b = try second.truth(login: "user3", from: from, to: start)
        #expect(!a.isEmpty)
        #expect(a == b)
        #expect(try other.truth(login: "user3", from: from, to: start) != a)
        #expect(first.users == second.users)
        #expect(Set(first.users.map(\.id)).isDisjoint(with: other.users.map(\.id)))
        #expect(Set(first.users.map(\.token)).isDisjoint(with: other.users.map(\.token)))
        #expect(first.users.map(\.login) == ["user1", "user2", "user3", "user4", "user5"])
        #expect(first.users.allSatisfy { $0.token.hasPrefix("ghu_sim_") && $0.refreshToken.hasPrefix("ghr_sim_") })
    }

    @Test("the truth holds only kept kinds, within the window, with the documented id shapes")
    func truthShape() throws {
        let start = Date().addingTimeInterval(-60)
        let simulator = GitHubSimulator(configuration: configuration(seed: 3, start: start))
        let from = start.addingTimeInterval(-6 * 3_600)
        for user in simulator.users {
            let truth = try simulator.truth(login: user.login, from: from, to: Date())
            for activity in truth {
                #expect(keptKinds.contains(activity.kind))
                #expect(activity.occurredAt >= from.addingTimeInterval(-1))
                #expect(activity.sourceURL.hasPrefix("https://github.com/"))
                #expect(!activity.sourceURL.contains("/repos/"))
                if activity.id.hasPrefix("github:notification:") {
                    #expect(activity.id.hasSuffix("Z"))
                } else {
                    #expect(activity.id.hasPrefix("github:event:"))
                }
            }
        }
        #expect(throws: SimulatorError.self) { try simulator.truth(login: "nobody", from: from, to: Date()) }
    }
}

@Suite("HTTP API", .timeLimit(.minutes(1)))
struct APITests {
    @Test("notifications paginate with absolute Link headers and are newest first")
    func notificationPagination() async throws {
        try await withSimulator({ $0.historyItems = 60 }) { simulator in
            let token = simulator.users[0].token
            let pages = try await walkPages(
                "\(simulator.baseURL)/notifications?all=true&per_page=7", token: token)
            #expect(pages.count > 1)
            #expect(pages.allSatisfy { $0.status == 200 && $0.header("X-Poll-Interval") == "60" })
            let first = pages[0]
            #expect(first.links["next"]?.hasPrefix("\(simulator.baseURL)/notifications?") == true)
            #expect(first.links["next"]?.contains("all=true") == true)
            #expect(first.links["last"]?.hasSuffix("page=\(pages.count)") == true)
            #expect(pages.last?.links["next"] == nil)
            #expect(pages.last?.links["prev"] != nil)
            let threads = pages.flatMap { $0.jsonArray ?? [] }
            let times = threads.compactMap { $0["updated_at"] as? String }
            #expect(times.count == threads.count)
            #expect(times == times.sorted(by: >))
            let ids = threads.compactMap { $0["id"] as? String }
            #expect(Set(ids).count == threads.count)
            // Noise is served (the client must filter it), and every kept subject links back to this simulator.
            let reasons = Set(threads.compactMap { $0["reason"] as? String })
            #expect(reasons.contains("subscribed") || reasons.contains("ci_activity"))
            for thread in threads {
                let subject = thread["subject"] as? [String: Any]
                let type = subject?["type"] as? String
                if type == "Issue" || type == "PullRequest" {
                    #expect((subject?["url"] as? String)?.hasPrefix(simulator.baseURL + "/repos/") == true)
                }
                let repository = thread["repository"] as? [String: Any]
                #expect(repository?["full_name"] is String)
                #expect((repository?["owner"] as? [String: Any])?["login"] is String)
            }
            // Same set through the largest page size.
            let whole = try await walkPages("\(simulator.baseURL)/notifications?all=true&per_page=50", token: token)
            #expect(whole.flatMap { $0.jsonArray ?? [] }.compactMap { $0["id"] as? String } == ids)
        }
    }

    @Test("since/before window the notifications")
    func notificationWindow() async throws {
        try await withSimulator({ $0.historyItems = 40 }) { simulator in
            let token = simulator.users[1].token
            let all = try await walkPages("\(simulator.baseURL)/notifications?all=true", token: token)
                .flatMap { $0.jsonArray ?? [] }
            let times = all.compactMap { $0["updated_at"] as? String }
            try #require(times.count >= 4)
            let before = times[1]
            let since = times[times.count - 2]
            let window = try await walkPages(
                "\(simulator.baseURL)/notifications?all=true&since=\(since)&before=\(before)", token: token
            )
            .flatMap { $0.jsonArray ?? [] }
            let windowTimes = window.compactMap { $0["updated_at"] as? String }
            #expect(windowTimes.allSatisfy { $0 >= since && $0 < before })
            #expect(windowTimes.count == times.filter { $0 >= since && $0 < before }.count)
        }
    }

    @Test("If-Modified-Since gives 304 for an unchanged account, free of quota, and 200 once something changes")
    func notificationsNotModified() async throws {
        try await withSimulator({ $0.activityInterval = .seconds(3_600) }) { simulator in
            let user = simulator.users[0]
            let first = try await send("\(simulator.baseURL)/notifications?all=true", token: user.token)
            let lastModified = try #require(first.header("Last-Modified"))
            let used = simulator.quotaUsed(token: user.token)
            #expect(used == 1)
            for _ in 0..<3 {
                let again = try await send(
                    "\(simulator.baseURL)/notifications?all=true", token: user.token,
                    headers: [("If-Modified-Since", lastModified)])
                #expect(again.status == 304)
                #expect(again.body.isEmpty)
                #expect(again.header("X-Poll-Interval") == "60")
                #expect(again.header("x-ratelimit-remaining") == "\(5000 - used)")
            }
            #expect(simulator.quotaUsed(token: user.token) == used)
            try simulator.addNotification(for: user.login, reason: "assign", title: "New work", at: Date())
            let changed = try await send(
                "\(simulator.baseURL)/notifications?all=true", token: user.token,
                headers: [("If-Modified-Since", lastModified)])
            #expect(changed.status == 200)
            #expect(
                changed.jsonArray?.first?["subject"].flatMap { ($0 as? [String: Any])?["title"] as? String }
                    == "New work")
            #expect(simulator.quotaUsed(token: user.token) == used + 1)
            let log = simulator.requests()
            #expect(log.filter(\.notModified).count == 3)
            #expect(log.filter(\.notModified).allSatisfy { !$0.countedAgainstQuota })
        }
    }

    @Test("subjects and comments carry strong ETags; If-None-Match gives a free 304")
    func subjectsETag() async throws {
        try await withSimulator { simulator in
            let user = simulator.users[0]
            let thread = try simulator.addNotification(
                for: user.login, reason: "comment", subjectType: "PullRequest", repo: "octo/widgets", title: "Widgets",
                actor: "grace-sim", commentBody: "Nice work", reviewComment: true)
            let threadJSON = try await send("\(simulator.baseURL)/notifications/threads/\(thread)", token: user.token)
            #expect(threadJSON.status == 200)
            let subject = try #require(threadJSON.jsonObject?["subject"] as? [String: Any])
            let subjectURL = try #require(subject["url"] as? String)
            let commentURL = try #require(subject["latest_comment_url"] as? String)
            #expect(subjectURL == "\(simulator.baseURL)/repos/octo/widgets/pulls/1")
            #expect(commentURL.contains("/repos/octo/widgets/pulls/comments/"))
            for url in [subjectURL, commentURL, "\(simulator.baseURL)/repos/octo/widgets/issues/1"] {
                let first = try await send(url, token: user.token)
                #expect(first.status == 200)
                let etag = try #require(first.header("ETag"))
                #expect(etag.hasPrefix("\"") && !etag.hasPrefix("W/"))
                let used = simulator.quotaUsed(token: user.token)
                let second = try await send(url, token: user.token, headers: [("If-None-Match", etag)])
                #expect(second.status == 304)
                #expect(simulator.quotaUsed(token: user.token) == used)
            }
            let pull = try await send(subjectURL, token: user.token)
            #expect(pull.jsonObject?["merged"] as? Bool == false)
            #expect((pull.jsonObject?["head"] as? [String: Any])?["ref"] is String)
            let comment = try await send(commentURL, token: user.token)
            #expect(comment.jsonObject?["body"] as? String == "Nice work")
            #expect((comment.jsonObject?["user"] as? [String: Any])?["login"] as? String == "grace-sim")
            let issue = try await send("\(simulator.baseURL)/repos/octo/widgets/issues/1", token: user.token)
            #expect(issue.jsonObject?["pull_request"] is [String: Any])
            let missing = try await send("\(simulator.baseURL)/repos/octo/widgets/issues/99", token: user.token)
            #expect(missing.status == 404)
        }
    }

    @Test("/user and /users/{u} identify accounts")
    func users() async throws {
        try await withSimulator { simulator in
            let user = simulator.users[2]
            let me = try await send("\(simulator.baseURL)/user", token: user.token)
            #expect(me.jsonObject?["login"] as? String == user.login)
            #expect(me.jsonObject?["id"] as? Int == user.id)
            let other = try await send("\(simulator.baseURL)/users/user1", token: user.token)
            #expect(other.jsonObject?["login"] as? String == "user1")
            #expect(other.jsonObject?["plan"] == nil)
        }
    }

    @Test("unknown, missing and expired tokens get 401 Bad credentials without using quota")
    func unauthorized() async throws {
        try await withSimulator { simulator in
            let user = simulator.users[0]
            let bogus = try await send("\(simulator.baseURL)/notifications", token: "ghu_sim_nope")
            #expect(bogus.status == 401)
            #expect(bogus.jsonObject?["message"] as? String == "Bad credentials")
            #expect(bogus.jsonObject?["documentation_url"] is String)
            let anonymous = try await send("\(simulator.baseURL)/user")
            #expect(anonymous.status == 401)
            let ok = try await send(
                "\(simulator.baseURL)/user", token: user.token, headers: [("Authorization", "token \(user.token)")])
            #expect(ok.status == 200)
            try simulator.expireToken(login: user.login)
            let expired = try await send("\(simulator.baseURL)/user", token: user.token)
            #expect(expired.status == 401)
            #expect(expired.jsonObject?["message"] as? String == "Bad credentials")
            #expect(simulator.quotaUsed(token: user.token) == 1)
            #expect(simulator.requests().last?.login == user.login)
        }
    }

    @Test("a spent quota answers 403 with x-ratelimit-remaining 0 and a reset time")
    func quotaExhaustion() async throws {
        try await withSimulator({ $0.quotaPerHour = 3 }) { simulator in
            let user = simulator.users[0]
            for expected in (0..<3).reversed() {
                let response = try await send("\(simulator.baseURL)/user", token: user.token)
                #expect(response.status == 200)
                #expect(response.header("x-ratelimit-remaining") == "\(expected)")
                #expect(response.header("x-ratelimit-limit") == "3")
                #expect(response.header("x-ratelimit-resource") == "core")
            }
            let limited = try await send("\(simulator.baseURL)/user", token: user.token)
            #expect(limited.status == 403)
            #expect(limited.header("x-ratelimit-remaining") == "0")
            #expect((limited.jsonObject?["message"] as? String)?.hasPrefix("API rate limit exceeded") == true)
            let reset = try #require(limited.header("x-ratelimit-reset").flatMap(Int.init))
            #expect(reset > Int(Date().timeIntervalSince1970))
            #expect(simulator.quotaUsed(token: user.token) == 3)
            // Another account is unaffected.
            let other = try await send("\(simulator.baseURL)/user", token: simulator.users[1].token)
            #expect(other.status == 200)
        }
    }

    @Test("only the newest 300 events are reachable, newest first, through Link pages; ETag gives 304")
    func eventCap() async throws {
        try await withSimulator({
            $0.historyItems = 0
            $0.activityInterval = .seconds(3_600)
        }) { simulator in
            let user = simulator.users[0]
            let base = Date().addingTimeInterval(-4_000)
            var ids: [String] = []
            for index in 0..<320 {
                ids.append(
                    try simulator.addEvent(
                        for: user.login, type: index % 2 == 0 ? "IssuesEvent" : "PushEvent", title: "Event \(index)",
                        at: base.addingTimeInterval(Double(index * 10))))
            }
            let pages = try await walkPages(
                "\(simulator.baseURL)/users/\(user.login)/events?per_page=100", token: user.token)
            #expect(pages.count == 3)
            let events = pages.flatMap { $0.jsonArray ?? [] }
            #expect(events.count == 300)
            #expect(events.compactMap { $0["id"] as? String } == Array(ids.suffix(300).reversed()))
            let defaultPage = try await send("\(simulator.baseURL)/users/\(user.login)/events", token: user.token)
            #expect(defaultPage.jsonArray?.count == 30)
            #expect(defaultPage.links["last"]?.hasSuffix("page=10") == true)
            let etag = try #require(defaultPage.header("ETag"))
            let used = simulator.quotaUsed(token: user.token)
            let again = try await send(
                "\(simulator.baseURL)/users/\(user.login)/events", token: user.token,
                headers: [("If-None-Match", etag)])
            #expect(again.status == 304)
            #expect(simulator.quotaUsed(token: user.token) == used)
            try simulator.addEvent(for: user.login, type: "PullRequestEvent", title: "Fresh")
            let changed = try await send(
                "\(simulator.baseURL)/users/\(user.login)/events", token: user.token,
                headers: [("If-None-Match", etag)])
            #expect(changed.status == 200)
            let newest = try #require(changed.jsonArray?.first)
            #expect(newest["type"] as? String == "PullRequestEvent")
            let payload = newest["payload"] as? [String: Any]
            #expect(payload?["action"] as? String == "opened")
            // GitHub's payload since 2025-10-07: the pull request's reference only; the title is at its `url`.
            let pull = try #require(payload?["pull_request"] as? [String: Any])
            #expect(Set(pull.keys) == ["url", "id", "number", "head", "base"])
            let url = try #require(pull["url"] as? String)
            #expect(url.hasPrefix(simulator.baseURL))
            let fetched = try await send(url, token: user.token)
            #expect(fetched.jsonObject?["title"] as? String == "Fresh")
        }
    }

    @Test("the events feed keeps 30 days, as GitHub has since 2025-01-30")
    func eventsWindow() async throws {
        try await withSimulator({ $0.historyItems = 0 }) { simulator in
            let user = simulator.users[0]
            let old = try simulator.addEvent(
                for: user.login, type: "IssuesEvent", at: Date().addingTimeInterval(-31 * 86_400))
            let recent = try simulator.addEvent(
                for: user.login, type: "IssuesEvent", at: Date().addingTimeInterval(-29 * 86_400))
            let page = try await send("\(simulator.baseURL)/users/\(user.login)/events", token: user.token)
            let ids = page.jsonArray?.compactMap { $0["id"] as? String } ?? []
            #expect(ids.contains(recent))
            #expect(!ids.contains(old))
        }
    }

    @Test("a DiscussionEvent carries its discussion")
    func discussionEvent() async throws {
        try await withSimulator({ $0.historyItems = 0 }) { simulator in
            let user = simulator.users[0]
            try simulator.addEvent(
                for: user.login, type: "DiscussionEvent", repo: "octo/app", number: 5, title: "Ideas")
            let page = try await send("\(simulator.baseURL)/users/\(user.login)/events", token: user.token)
            let newest = try #require(page.jsonArray?.first)
            #expect(newest["type"] as? String == "DiscussionEvent")
            let discussion = (newest["payload"] as? [String: Any])?["discussion"] as? [String: Any]
            #expect(discussion?["number"] as? Int == 5)
            #expect(discussion?["title"] as? String == "Ideas")
            #expect(discussion?["html_url"] as? String == "https://github.com/octo/app/discussions/5")
        }
    }

    @Test("full event payloads, as GitHub served them before 2025-10-07, only when asked for")
    func fullEventPayloads() async throws {
        try await withSimulator({ $0.fullEventPayloads = true }) { simulator in
            let user = simulator.users[0]
            try simulator.addEvent(for: user.login, type: "PullRequestEvent", title: "Old shape")
            let page = try await send("\(simulator.baseURL)/users/\(user.login)/events", token: user.token)
            let newest = try #require(page.jsonArray?.first)
            let pull = (newest["payload"] as? [String: Any])?["pull_request"] as? [String: Any]
            #expect(pull?["title"] as? String == "Old shape")
            #expect(pull?["html_url"] is String)
        }
    }

    @Test("refreshing returns a new pair and retires the old one")
    func refresh() async throws {
        try await withSimulator { simulator in
            let old = simulator.users[0]
            let response = try await send(
                "\(simulator.baseURL)/login/oauth/access_token", method: .POST,
                headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                body: "grant_type=refresh_token&refresh_token=\(old.refreshToken)&client_id=x&client_secret=y")
            #expect(response.status == 200)
            let json = try #require(response.jsonObject)
            let access = try #require(json["access_token"] as? String)
            let refresh = try #require(json["refresh_token"] as? String)
            #expect(access.hasPrefix("ghu_sim_") && access != old.token)
            #expect(refresh.hasPrefix("ghr_sim_") && refresh != old.refreshToken)
            #expect(json["token_type"] as? String == "bearer")
            #expect(json["expires_in"] as? Int == 28_800)
            #expect(json["refresh_token_expires_in"] is Int)
            #expect(simulator.users[0].token == access)
            #expect(try await send("\(simulator.baseURL)/user", token: old.token).status == 401)
            #expect(try await send("\(simulator.baseURL)/user", token: access).status == 200)
            let reused = try await send(
                "\(simulator.baseURL)/login/oauth/access_token", method: .POST,
                headers: [("Content-Type", "application/json"), ("Accept", "application/json")],
                body: "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"\(old.refreshToken)\"}")
            #expect(reused.jsonObject?["error"] as? String == "bad_refresh_token")
            let json2 = try await send(
                "\(simulator.baseURL)/login/oauth/access_token", method: .POST,
                headers: [("Content-Type", "application/json"), ("Accept", "application/json")],
                body: "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"\(refresh)\"}")
            #expect(json2.jsonObject?["access_token"] is String)
        }
    }

    @Test("new items keep appearing on the real clock after start")
    func liveActivity() async throws {
        try await withSimulator({
            $0.historyItems = 0
            $0.activityInterval = .milliseconds(400)
        }) { simulator in
            let user = simulator.users[0]
            let appeared = try await eventuallyHolds(within: .seconds(10)) {
                let notifications = try await send("\(simulator.baseURL)/notifications?all=true", token: user.token)
                let events = try await send("\(simulator.baseURL)/users/\(user.login)/events", token: user.token)
                return (notifications.jsonArray?.count ?? 0) > 0 && (events.jsonArray?.count ?? 0) > 0
            }
            #expect(appeared)
        }
    }
}

@Suite("Faults", .timeLimit(.minutes(1)))
struct FaultTests {
    @Test("injected faults hit exactly the next N matching requests")
    func injected() async throws {
        try await withSimulator { simulator in
            let token = simulator.users[0].token
            simulator.injectFault(.serverError, count: 2, pathPrefix: "/notifications")
            #expect(try await send("\(simulator.baseURL)/user", token: token).status == 200)
            #expect(try await send("\(simulator.baseURL)/notifications", token: token).status == 502)
            #expect(try await send("\(simulator.baseURL)/notifications", token: token).status == 502)
            #expect(try await send("\(simulator.baseURL)/notifications", token: token).status == 200)

            simulator.injectFault(.secondaryLimit(retryAfter: 7), count: 1)
            let secondary = try await send("\(simulator.baseURL)/user", token: token)
            #expect(secondary.status == 403)
            #expect(secondary.header("retry-after") == "7")
            #expect((secondary.jsonObject?["message"] as? String)?.contains("secondary rate limit") == true)

            simulator.injectFault(.tooManyRequests(retryAfter: 2), count: 1)
            let tooMany = try await send("\(simulator.baseURL)/user", token: token)
            #expect(tooMany.status == 429)
            #expect(tooMany.header("retry-after") == "2")

            simulator.injectFault(.rateLimited, count: 1)
            let limited = try await send("\(simulator.baseURL)/user", token: token)
            #expect(limited.status == 403)
            #expect(limited.header("x-ratelimit-remaining") == "0")

            simulator.injectFault(.malformedJSON, count: 1)
            let malformed = try await send("\(simulator.baseURL)/notifications?all=true", token: token)
            #expect(malformed.status == 200)
            #expect(malformed.jsonArray == nil)

            simulator.injectFault(.drop, count: 1)
            await #expect(throws: (any Error).self) {
                _ = try await send("\(simulator.baseURL)/user", token: token)
            }
            #expect(try await send("\(simulator.baseURL)/user", token: token).status == 200)
            let faults = simulator.requests().compactMap(\.fault)
            #expect(
                faults == [
                    "serverError", "serverError", "secondaryLimit", "tooManyRequests", "rateLimited", "malformedJSON",
                    "drop",
                ])
        }
    }

    @Test("random faults follow their rates")
    func random() async throws {
        try await withSimulator({
            $0.errorRate = 0.3
            $0.secondaryLimitRate = 0.2
        }) { simulator in
            let token = simulator.users[0].token
            var statuses: [Int] = []
            for _ in 0..<60 { statuses.append(try await send("\(simulator.baseURL)/user", token: token).status) }
            #expect(statuses.contains(200))
            #expect(statuses.contains { $0 == 502 || $0 == 503 })
            #expect(statuses.contains(403))
        }
    }
}

@Suite("Ground truth and observation", .timeLimit(.minutes(1)))
struct TruthTests {
    @Test("texts follow issue 3, with actor and body from the latest comment")
    func texts() async throws {
        try await withSimulator({
            $0.historyItems = 0; $0.activityInterval = .seconds(3_600)
            // One thread per notification: each reason's text is checked on a thread of its own, at one moment.
            $0.threadBumps = false
        }) { simulator in
            let login = "user2"
            let at = Date().addingTimeInterval(-30)
            let comment = try simulator.addNotification(
                for: login, reason: "comment", repo: "octo/app", number: 12, title: "Crash on start", actor: "ada-sim",
                commentBody: "Same here", at: at)
            let mention = try simulator.addNotification(
                for: login, reason: "mention", subjectType: "PullRequest", repo: "octo/app", number: 13,
                title: "Faster sync", actor: "ken-sim", commentBody: "@user2 please review", at: at)
            let state = try simulator.addNotification(
                for: login, reason: "state_change", subjectType: "PullRequest", repo: "octo/app", number: 14,
                title: "Old PR", actor: "radia-sim", state: "closed", closedBy: "linus-sim", at: at)
            let assign = try simulator.addNotification(
                for: login, reason: "assign", repo: "octo/app", number: 12, title: "ignored", at: at)
            let review = try simulator.addNotification(
                for: login, reason: "review_requested", subjectType: "PullRequest", repo: "octo/app", number: 13, at: at
            )
            let author = try simulator.addNotification(
                for: login, reason: "author", repo: "octo/app", number: 12, at: at)
            _ = try simulator.addNotification(for: login, reason: "subscribed", repo: "octo/app", number: 12, at: at)
            let release = try simulator.addNotification(
                for: login, reason: "author", subjectType: "Release", repo: "octo/app", title: "v3.1.0", at: at)
            let opened = try simulator.addEvent(
                for: login, type: "PullRequestEvent", repo: "octo/app", title: "Add cache", at: at)
            let issueComment = try simulator.addEvent(
                for: login, type: "IssueCommentEvent", repo: "octo/app", number: 12, at: at)
            let prComment = try simulator.addEvent(
                for: login, type: "PullRequestReviewCommentEvent", repo: "octo/app", number: 13, at: at)
            _ = try simulator.addEvent(for: login, type: "WatchEvent", repo: "octo/app", at: at)
            _ = try simulator.addEvent(
                for: login, type: "IssuesEvent", action: "closed", repo: "octo/app", number: 12, at: at)

            let stamp = ISO8601DateFormatter().string(
                from: Date(timeIntervalSince1970: at.timeIntervalSince1970.rounded(.down)))
            let truth = try simulator.truth(login: login, from: at.addingTimeInterval(-1), to: Date())
            let byId = Dictionary(uniqueKeysWithValues: truth.map { ($0.id, $0) })
            func text(_ thread: String) -> String? { byId["github:notification:\(thread):\(stamp)"]?.text }
            #expect(text(comment) == "ada-sim commented on issue #12 in octo/app: Same here")
            #expect(text(mention) == "ken-sim mentioned user2 in octo/app PR #13: @user2 please review")
            // Told by who merged it (`merged_by`), not by the author or the latest commenter.
            #expect(text(state) == "linus-sim changed PR #14 state to closed in octo/app: Old PR")
            #expect(text(assign) == "Issue #12 assigned to user2 in octo/app: Crash on start")
            #expect(text(review) == "user2 requested to review PR #13 in octo/app: Faster sync")
            #expect(text(author) == "GitHub notification for user2 in octo/app")
            #expect(byId["github:event:\(opened)"]?.text.hasPrefix("user2 created PR #") == true)
            #expect(byId["github:event:\(opened)"]?.kind == "pr_opened")
            #expect(byId["github:event:\(issueComment)"]?.text == "user2 commented on issue #12: Crash on start")
            #expect(byId["github:event:\(prComment)"]?.text == "user2 commented on PR #13: Faster sync")
            #expect(byId["github:event:\(prComment)"]?.kind == "pr_comment")
            #expect(
                byId["github:notification:\(comment):\(stamp)"]?.sourceURL == "https://github.com/octo/app/issues/12")
            // The user's release (reason author) is an activity too; a subscribed thread is not.
            #expect(text(release) == "GitHub notification for user2 in octo/app release: v3.1.0")
            #expect(truth.count == 10)

            // Touching a thread re-bumps it: a new version with its own id and, with a comment, its actor and body;
            // the old version stays in the truth, marked with when it was superseded.
            let later = Date().addingTimeInterval(-5)
            try simulator.touchThread(comment, at: later, commentBody: "Fixed in main", actor: "dennis-sim")
            let touched = try simulator.truth(login: login, from: at.addingTimeInterval(-1), to: Date())
            let laterStamp = ISO8601DateFormatter().string(
                from: Date(timeIntervalSince1970: later.timeIntervalSince1970.rounded(.down)))
            #expect(
                touched.first { $0.id == "github:notification:\(comment):\(laterStamp)" }?.text
                    == "dennis-sim commented on issue #12 in octo/app: Fixed in main")
            #expect(touched.count == 11)
            let old = touched.first { $0.id == "github:notification:\(comment):\(stamp)" }
            #expect(old?.supersededAt != nil)
            #expect(old?.commentURL?.hasPrefix("https://github.com/octo/app/issues/12#issuecomment-") == true)
            #expect(
                touched.filter { $0.id.hasPrefix("github:notification:\(comment):") && $0.supersededAt == nil }.count
                    == 1)

            // The admin endpoint serves the same truth.
            let from = ISO8601DateFormatter().string(from: at.addingTimeInterval(-1))
            let admin = try await send("\(simulator.baseURL)/_sim/truth?login=\(login)&from=\(from)")
            let served = try JSONSerialization.jsonObject(with: Data(admin.body)) as? [[String: Any]]
            #expect(served?.compactMap { $0["id"] as? String }.sorted() == touched.map(\.id).sorted())
        }
    }

    @Test("the request log never holds a token, and shows the Host header a client sent")
    func requestLog() async throws {
        try await withSimulator { simulator in
            let user = simulator.users[0]
            let thread = try simulator.addNotification(for: user.login, reason: "assign", title: "Hostile")
            let port = simulator.port
            try simulator.setSubjectHost(threadId: thread, host: "localhost:\(port)")
            let threadJSON = try await send("\(simulator.baseURL)/notifications/threads/\(thread)", token: user.token)
            let subject = threadJSON.jsonObject?["subject"] as? [String: Any]
            #expect((subject?["url"] as? String)?.hasPrefix("http://localhost:\(port)/repos/") == true)
            #expect(
                try simulator.truth(login: user.login, from: Date().addingTimeInterval(-60), to: Date())
                    .allSatisfy { !$0.id.contains(thread) })
            #expect(!simulator.requests().contains { $0.host == "localhost:\(port)" })
            _ = try await send(
                "\(simulator.baseURL)/user?access_token=\(user.token)", token: user.token,
                headers: [("Host", "localhost:\(port)")])
            _ = try await send(
                "\(simulator.baseURL)/login/oauth/access_token", method: .POST,
                headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: "grant_type=refresh_token&refresh_token=\(user.refreshToken)")
            let log = simulator.requests()
            #expect(log.contains { $0.host == "localhost:\(port)" })
            #expect(simulator.hostsSeen().contains("localhost:\(port)"))
            let encoded = String(decoding: try JSONEncoder().encode(log), as: UTF8.self)
            #expect(!encoded.contains(user.token))
            #expect(!encoded.contains(user.refreshToken))
            #expect(!encoded.contains("ghu_sim_"))
            #expect(log.allSatisfy { $0.tokenHash?.count ?? 16 == 16 })
            let admin = try await send("\(simulator.baseURL)/_sim/requests")
            #expect(admin.status == 200)
            #expect(!admin.text.contains(user.token) && !admin.text.contains("ghr_sim_"))
            #expect((admin.jsonObject?["requests"] as? [Any])?.count == log.count)
            let quota = try await send("\(simulator.baseURL)/_sim/quota?login=\(user.login)")
            #expect(quota.jsonObject?["used"] as? Int == simulator.quotaUsed(token: simulator.users[0].token))
            let users = try await send("\(simulator.baseURL)/_sim/users")
            #expect((users.jsonArray?.first?["login"] as? String) == "user1")
        }
    }
}

@Suite("Hostile and admin controls", .timeLimit(.minutes(1)))
struct ControlTests {
    @Test("Link and subject URLs can be moved to another origin for hostile-response tests")
    func hostileOrigins() async throws {
        try await withSimulator({ $0.historyItems = 40 }) { simulator in
            let user = simulator.users[0]
            simulator.setPaginationLinkHost("localhost:\(simulator.port)")
            let page = try await send("\(simulator.baseURL)/notifications?all=true&per_page=2", token: user.token)
            #expect(page.links["next"]?.hasPrefix("http://localhost:\(simulator.port)/notifications?") == true)
            simulator.setPaginationLinkHost(nil)
            let again = try await send("\(simulator.baseURL)/notifications?all=true&per_page=2", token: user.token)
            #expect(again.links["next"]?.hasPrefix(simulator.baseURL) == true)

            let thread = try simulator.addNotification(for: user.login, reason: "mention", commentBody: "hi @user1")
            try simulator.setSubjectURLHost(threadId: thread, host: "https://127.0.0.1:\(simulator.port)")
            let json = try await send("\(simulator.baseURL)/notifications/threads/\(thread)", token: user.token)
            let subject = json.jsonObject?["subject"] as? [String: Any]
            #expect((subject?["url"] as? String)?.hasPrefix("https://127.0.0.1:\(simulator.port)/repos/") == true)
            #expect((subject?["latest_comment_url"] as? String)?.hasPrefix("https://127.0.0.1:") == true)
            #expect(throws: SimulatorError.self) { try simulator.setSubjectURLHost(threadId: "12", host: "x") }
        }
    }

    @Test("a public base URL names the origin other containers use in every returned URL")
    func publicBaseURL() async throws {
        try await withSimulator({
            $0.publicBaseURL = "http://github-sim:8080/"
            $0.historyItems = 40
        }) { simulator in
            #expect(simulator.baseURL == "http://github-sim:8080")
            #expect(simulator.boundURL.hasPrefix("http://127.0.0.1:"))
            let user = simulator.users[0]
            let page = try await send("\(simulator.boundURL)/notifications?all=true&per_page=2", token: user.token)
            #expect(page.links["next"]?.hasPrefix("http://github-sim:8080/notifications?") == true)
            let urls = (page.jsonArray ?? []).compactMap { ($0["subject"] as? [String: Any])?["url"] as? String }
            #expect(urls.allSatisfy { $0.hasPrefix("http://github-sim:8080/") })
        }
    }

    @Test("other processes steer faults and token expiry through /_sim")
    func adminControls() async throws {
        try await withSimulator { simulator in
            let user = simulator.users[0]
            let injected = try await send(
                "\(simulator.baseURL)/_sim/faults?fault=secondaryLimit&count=1&retry_after=3", method: .POST)
            #expect(injected.status == 204)
            let limited = try await send("\(simulator.baseURL)/user", token: user.token)
            #expect(limited.status == 403)
            #expect(limited.header("retry-after") == "3")
            #expect(try await send("\(simulator.baseURL)/user", token: user.token).status == 200)
            let bad = try await send("\(simulator.baseURL)/_sim/faults?fault=nonsense", method: .POST)
            #expect(bad.status == 400)
            #expect(try await send("\(simulator.baseURL)/_sim/expire?login=user1", method: .POST).status == 204)
            #expect(try await send("\(simulator.baseURL)/user", token: user.token).status == 401)
            #expect(try await send("\(simulator.baseURL)/_sim/truth?login=nobody").status == 404)
            // Reconnected elsewhere: the old pair is dead, the answer holds the new one.
            let other = simulator.users[1]
            let reconnect = try await send("\(simulator.baseURL)/_sim/reconnect?login=\(other.login)", method: .POST)
            #expect(reconnect.status == 200)
            #expect(try await send("\(simulator.baseURL)/user", token: other.token).status == 401)
            let renewed = try #require(simulator.user(login: other.login))
            #expect(renewed.token != other.token && reconnect.text.contains(renewed.token))
            #expect(try await send("\(simulator.baseURL)/user", token: renewed.token).status == 200)
            // Admin requests are neither recorded nor faulted.
            #expect(simulator.requests().allSatisfy { !$0.path.hasPrefix("/_sim") })
        }
    }
}

@Suite("Payload shapes", .timeLimit(.minutes(1)))
struct ShapeTests {
    @Test("threads, issues, pull requests, comments, events and users carry the fields clients decode")
    func shapes() async throws {
        try await withSimulator({ $0.historyItems = 80 }) { simulator in
            let user = simulator.users[0]
            let threads = try await walkPages("\(simulator.baseURL)/notifications?all=true", token: user.token)
                .flatMap { $0.jsonArray ?? [] }
            let kept = try #require(
                threads.first {
                    ($0["subject"] as? [String: Any])?["type"] as? String == "Issue"
                })
            #expect(kept["id"] is String)
            #expect(kept["unread"] is Bool)
            #expect(kept["url"] is String)
            #expect(kept.keys.contains("last_read_at"))
            let repository = try #require(kept["repository"] as? [String: Any])
            for key in ["id", "full_name", "html_url", "name", "owner", "url"] { #expect(repository[key] != nil) }
            let subject = try #require(kept["subject"] as? [String: Any])
            let issue = try await send(try #require(subject["url"] as? String), token: user.token)
            let issueJSON = try #require(issue.jsonObject)
            for key in ["id", "number", "title", "state", "html_url", "body", "user", "created_at", "updated_at"] {
                #expect(issueJSON[key] != nil, "issue.\(key)")
            }
            #expect(issueJSON["id"] is Int && issueJSON["number"] is Int)
            #expect((issueJSON["user"] as? [String: Any])?["id"] is Int)

            let events = try await walkPages(
                "\(simulator.baseURL)/users/\(user.login)/events?per_page=100", token: user.token
            )
            .flatMap { $0.jsonArray ?? [] }
            #expect(!events.isEmpty)
            for event in events {
                #expect(event["id"] is String)
                #expect(event["public"] is Bool)
                #expect((event["actor"] as? [String: Any])?["login"] as? String == user.login)
                #expect((event["repo"] as? [String: Any])?["name"] is String)
                #expect(event["payload"] is [String: Any])
            }
            let types = Set(events.compactMap { $0["type"] as? String })
            #expect(types.contains("PushEvent") || types.contains("WatchEvent"))
            // Today's trimmed shapes: pushes without commits, pull request events without title or page.
            for push in events where push["type"] as? String == "PushEvent" {
                let payload = try #require(push["payload"] as? [String: Any])
                #expect(payload["commits"] == nil && payload["size"] == nil && payload["distinct_size"] == nil)
                #expect(payload["head"] is String)
            }
            for pull in events where pull["type"] as? String == "PullRequestEvent" {
                let reference = (pull["payload"] as? [String: Any])?["pull_request"] as? [String: Any]
                #expect(reference?["title"] == nil && reference?["html_url"] == nil && reference?["user"] == nil)
                #expect(reference?["number"] is Int && reference?["url"] is String)
            }
            if let comment = events.first(where: { $0["type"] as? String == "IssueCommentEvent" }) {
                let payload = try #require(comment["payload"] as? [String: Any])
                #expect(payload["action"] as? String == "created")
                #expect((payload["issue"] as? [String: Any])?["number"] is Int)
                #expect((payload["comment"] as? [String: Any])?["body"] is String)
            }
            let times = events.compactMap { $0["created_at"] as? String }
            #expect(times == times.sorted(by: >))
        }
    }
}

@Suite("Conditional requests after test changes", .timeLimit(.minutes(1)))
struct ListChangeTests {
    @Test("a thread added with an older updated_at still ends a 304 streak")
    func backdatedThread() async throws {
        try await withSimulator({ $0.activityInterval = .seconds(3_600) }) { simulator in
            let user = simulator.users[0]
            let first = try await send("\(simulator.baseURL)/notifications?all=true", token: user.token)
            let lastModified = try #require(first.header("Last-Modified"))
            try await Task.sleep(for: .milliseconds(1_100))
            try simulator.addNotification(
                for: user.login, reason: "mention", title: "Late arrival", commentBody: "@user1 look",
                at: Date().addingTimeInterval(-13 * 3_600))
            let after = try await send(
                "\(simulator.baseURL)/notifications?all=true", token: user.token,
                headers: [("If-Modified-Since", lastModified)])
            #expect(after.status == 200)
            #expect(after.header("Last-Modified") != lastModified)
        }
    }

    @Test("changes within one second each move Last-Modified")
    func sameSecondChanges() async throws {
        try await withSimulator({ $0.activityInterval = .seconds(3_600) }) { simulator in
            let user = simulator.users[0]
            let url = "\(simulator.baseURL)/notifications?all=true"
            var lastModified = try #require(try await send(url, token: user.token).header("Last-Modified"))
            let thread = try simulator.addNotification(for: user.login, reason: "assign", at: Date())
            for step in 0..<3 {
                switch step {
                case 0: try simulator.touchThread(thread, at: Date(), commentBody: "again")
                case 1:
                    try simulator.addNotification(for: user.login, reason: "author", at: Date().addingTimeInterval(-60))
                default: try simulator.setSubjectHost(threadId: thread, host: "localhost:1")
                }
                let page = try await send(url, token: user.token, headers: [("If-Modified-Since", lastModified)])
                #expect(page.status == 200, "step \(step)")
                lastModified = try #require(page.header("Last-Modified"))
                let unchanged = try await send(url, token: user.token, headers: [("If-Modified-Since", lastModified)])
                #expect(unchanged.status == 304, "step \(step)")
            }
        }
    }
}
