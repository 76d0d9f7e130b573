import Foundation
import SyncModel
import Testing

@testable import GitHub
import Logging

/// Every recorded payload in shared/fixtures/github decodes into the types the sync reads.
@Suite("GitHub fixtures")
struct FixtureDecodingTests {
    @Test func fixturesArePresent() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Fixtures.directory.path)
        #expect(names.filter { $0.hasSuffix(".json") }.count >= 20)
    }

    @Test func notificationsList() throws {
        let threads = try Fixtures.decode([NotificationThread].self, "notifications-list.json")
        #expect(!threads.isEmpty)
        let first = try #require(threads.first)
        #expect(first.id == "1")
        #expect(first.subject.type == "Issue")
        #expect(first.reason == "subscribed")
        #expect(first.updated_at == "2014-11-07T22:01:45Z")
        #expect(first.repository.full_name == "octocat/Hello-World")
        #expect(first.subject.latest_comment_url?.hasSuffix("/issues/comments/123") == true)
        // last_read_at may be null, latest_comment_url may be absent.
        let trimmed = try Fixtures.json("notifications-list.json").removing("last_read_at").removing("unread")
        _ = try Fixtures.decode([NotificationThread].self, from: trimmed)
    }

    @Test func thread() throws {
        let thread = try Fixtures.decode(NotificationThread.self, "thread.json")
        #expect(thread.repository.owner?.login == "octocat")
        #expect(thread.subject.url != nil)
    }

    @Test func notificationsMarkRead() throws {
        let body = try Fixtures.decode(GitHubErrorBody.self, "notifications-mark-read.json")
        #expect(!body.message.isEmpty)
    }

    @Test func issueWithOptionalFieldsRemoved() throws {
        let issue = try Fixtures.decode(IssueOrPull.self, "issue.json")
        #expect(issue.number == 1347)
        #expect(issue.title == "Found a bug")
        #expect(issue.state == "open")
        #expect(issue.html_url == "https://github.com/octocat/Hello-World/issues/1347")
        #expect(issue.user?.login == "octocat")
        #expect(issue.pull_request?.html_url == "https://github.com/octocat/Hello-World/pull/1347")
        // API 2026-03-10 drops `assignee`; `state`, `body`, `closed_at`, `pinned_comment` may be missing or null.
        var trimmed = try Fixtures.json("issue.json")
        for key in ["assignee", "assignees", "state", "body", "closed_at", "pinned_comment", "state_reason", "user"] {
            trimmed = trimmed.removing(key)
        }
        let minimal = try Fixtures.decode(IssueOrPull.self, from: trimmed)
        #expect(minimal.state == nil)
        #expect(minimal.assignee == nil)
    }

    @Test func pullRequest() throws {
        let pull = try Fixtures.decode(IssueOrPull.self, "pull-request.json")
        #expect(pull.number == 1347)
        #expect(pull.title == "Amazing new feature")
        #expect(pull.merged == false)
        #expect(pull.html_url == "https://github.com/octocat/Hello-World/pull/1347")
    }

    @Test func comments() throws {
        let comment = try Fixtures.decode(GitHubComment.self, "issue-comment.json")
        #expect(comment.body == "Me too")
        #expect(comment.user?.login == "octocat")
        _ = try Fixtures.decode(GitHubComment.self, from: Fixtures.json("issue-comment.json").removing("pin"))
        let list = try Fixtures.decode([GitHubComment].self, "issue-comments-list.json")
        #expect(!list.isEmpty)
        let review = try Fixtures.decode(GitHubComment.self, "pull-review-comment.json")
        #expect(review.path != nil)
        #expect(review.in_reply_to_id != nil)
        #expect(!(try Fixtures.decode([GitHubComment].self, "pull-review-comments-list.json")).isEmpty)
    }

    @Test func users() throws {
        let user = try Fixtures.decode(GitHubAccount.self, "user.json")
        #expect(user.login == "octocat")
        #expect(user.id == 1)
        let publicUser = try Fixtures.decode(GitHubAccount.self, "user-public.json")
        #expect(publicUser.login == "octocat")
    }

    @Test func events() throws {
        let events = try Fixtures.decode([GitHubEvent].self, "user-events.json")
        #expect(events.map(\.type) == ["WatchEvent", "PushEvent"])
        #expect(events.allSatisfy { $0.org == nil })
        // Neither is an activity: watching and pushing are noise.
        #expect(events.allSatisfy { ActivityText.eventKind($0) == nil })
        let received = try Fixtures.decode([GitHubEvent].self, "user-received-events.json")
        #expect(!received.isEmpty)
    }

    /// Today's feed (`user-events-trimmed.json`): every item decodes although no pull request carries a title, and
    /// one item that is not an event, or of a type nobody documented, never fails the page.
    @Test func trimmedEventsDecodeItemByItem() throws {
        let page = try Fixtures.decode(EventPage.self, "user-events-trimmed.json")
        #expect(page.undecodable == 0)
        #expect(
            page.events.map(\.type) == [
                "PullRequestEvent", "PullRequestReviewEvent", "PushEvent", "IssueCommentEvent", "IssuesEvent",
            ])
        let opened = try #require(page.events.first)
        #expect(ActivityText.eventKind(opened) == "pr_opened")
        #expect(opened.payload?.pull_request?.title == nil)
        #expect(opened.payload?.pull_request?.url == "https://api.github.com/repos/octocat/Hello-World/pulls/1347")
        #expect(opened.payload?.pull_request?.number == 1347)
        // The whole page used to fail on the first of these items (`keyNotFound: title`).
        #expect(throws: (any Error).self) {
            try Fixtures.decode([IssueOrPull].self, from: pullRequests(in: "user-events-trimmed.json"))
        }

        guard case .array(var items) = try Fixtures.json("user-events-trimmed.json") else {
            Issue.record("not an array")
            return
        }
        items.insert(.object(["id": "x", "type": "PushEvent"]), at: 1)  // no repo: not an event we can read
        items.insert(.string("not even an object"), at: 3)
        items.append(.object(["id": "9", "type": "FutureEvent", "repo": ["name": "octo/new"], "payload": [:]]))
        let odd = try Fixtures.decode(EventPage.self, from: .array(items))
        #expect(odd.undecodable == 2)
        #expect(odd.events.count == page.events.count + 1)
        #expect(odd.events.last?.type == "FutureEvent")
        #expect(!GitHubEvent.knownTypes.contains("FutureEvent"))
    }

    /// `DiscussionEvent` (new since 2025) is a documented type: decoded, never counted as unknown.
    @Test func discussionEventDecodes() throws {
        let json: JSONValue = .array([
            .object([
                "id": "50", "type": "DiscussionEvent", "created_at": "2026-11-30T09:00:00Z",
                "actor": ["login": "octocat", "id": 583231], "repo": ["id": 1, "name": "octocat/Hello-World"],
                "payload": [
                    "action": "created",
                    "discussion": [
                        "number": 7, "title": "Ideas",
                        "html_url": "https://github.com/octocat/Hello-World/discussions/7",
                    ],
                ],
            ])
        ])
        let page = try Fixtures.decode(EventPage.self, from: json)
        #expect(page.undecodable == 0)
        let event = try #require(page.events.first)
        #expect(GitHubEvent.knownTypes.contains(try #require(event.type)))
        #expect(event.payload?.discussion?.number == 7)
        #expect(event.payload?.discussion?.title == "Ideas")
    }

    private func pullRequests(in name: String) throws -> JSONValue {
        guard case .array(let items) = try Fixtures.json(name) else { return .array([]) }
        return .array(items.compactMap { $0["payload"]?["pull_request"] })
    }

    @Test func searchAndRateLimit() throws {
        let search = try Fixtures.decode(IssueSearchResult.self, "search-issues.json")
        #expect(search.items.count <= search.total_count)
        let limits = try Fixtures.decode(RateLimitOverview.self, "rate-limit.json")
        #expect(limits.resources["core"]?.limit == 5000)
        #expect(limits.rate?.remaining == 4999)
    }

    @Test func octokitErrorBody() throws {
        let exchange = try #require(try Fixtures.exchanges("octokit-errors.json").first)
        #expect(exchange.status == 422)
        let body = try Fixtures.decode(GitHubErrorBody.self, from: exchange.response)
        #expect(body.message == "Validation Failed")
        #expect(body.errors?.first?.code != nil)
        #expect(body.documentation_url != nil)
    }

    @Test func octokitPaginationFollowsNextUntilMissing() throws {
        let exchanges = try Fixtures.exchanges("octokit-paginate-issues.json")
        let client = GitHubClient(configuration: GitHubConfiguration(), logger: .init(label: "test"))
        var requested = [exchanges[0].path]
        var index = 0
        var issues = 0
        while true {
            let exchange = exchanges[index]
            issues += try Fixtures.decode([IssueOrPull].self, from: exchange.response).count
            guard let link = exchange.headers["link"], let next = LinkHeader.parse(link)["next"] else { break }
            #expect(client.isAPIOrigin(next))
            let path = String(next.dropFirst("https://api.github.com".count))
            requested.append(path)
            index += 1
            #expect(exchanges[index].path == path)
        }
        #expect(requested.count == 5)
        #expect(issues > 0)
        let links = LinkHeader.parse(try #require(exchanges[1].headers["link"]))
        #expect(links.keys.sorted() == ["first", "last", "next", "prev"])
    }

    @Test func rateLimitHeadersWithStringsAndNumbers() throws {
        let root = try #require(try Fixtures.exchanges("octokit-get-root.json").first)
        let info = RateLimitInfo(header: { root.headers[$0] })
        #expect(info.limit == 5000)
        #expect(info.remaining == 4999)
        #expect(info.used == 1)  // a JSON number in the recording
        // "1507651200000" is not epoch seconds; read as milliseconds, it is the recording's date.
        #expect(info.reset == Date(timeIntervalSince1970: 1_507_651_200))
        #expect(root.headers["etag"] != nil)

        let search = try #require(try Fixtures.exchanges("octokit-search-issues.json").first)
        let searchInfo = RateLimitInfo(header: { search.headers[$0] })
        #expect(searchInfo.limit == 30)
        #expect(searchInfo.resource == nil || searchInfo.resource == "search")
        _ = try Fixtures.decode(IssueSearchResult.self, from: search.response)
    }

    @Test func markAsReadHasNoJSONBody() throws {
        let exchange = try #require(try Fixtures.exchanges("octokit-mark-notifications-as-read.json").first)
        #expect(exchange.status == 205)
        #expect(exchange.headers["content-type"]?.hasPrefix("text/plain") == true)
        #expect(exchange.response.stringValue?.isEmpty ?? true)
    }

    @Test func httpDates() {
        let date = HTTPDate.parse("Tue, 10 Oct 2017 16:00:00 GMT")
        #expect(date == Date(timeIntervalSince1970: 1_507_651_200))
        #expect(HTTPDate.format(Date(timeIntervalSince1970: 1_507_651_200)) == "Tue, 10 Oct 2017 16:00:00 GMT")
        #expect(HTTPDate.parse("not a date") == nil)
    }

    @Test func originGuard() {
        let client = GitHubClient(
            configuration: GitHubConfiguration(baseURL: "http://127.0.0.1:8080"), logger: .init(label: "test"))
        #expect(client.isAPIOrigin("http://127.0.0.1:8080/repos/a/b/issues/1"))
        #expect(!client.isAPIOrigin("http://127.0.0.1:8081/repos/a/b/issues/1"))
        #expect(!client.isAPIOrigin("https://127.0.0.1:8080/repos/a/b/issues/1"))
        #expect(!client.isAPIOrigin("http://localhost:8080/repos/a/b/issues/1"))
        #expect(!client.isAPIOrigin("http://127.0.0.1:8080@evil.example/x"))
        #expect(!client.isAPIOrigin("/relative"))
        let github = GitHubClient(configuration: GitHubConfiguration(), logger: .init(label: "test"))
        #expect(github.isAPIOrigin("https://api.github.com:443/user"))
        #expect(!github.isAPIOrigin("https://api.github.com.evil.example/user"))
    }
}
