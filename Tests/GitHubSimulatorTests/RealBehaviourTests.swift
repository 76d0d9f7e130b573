import ActivitySyncTesting
import AsyncHTTPClient
import Foundation
import GitHubSimulator
import Testing
import NIOHTTP1

/// GitHub as it really behaves (issue 10): threads re-bumped by new activity, late events, Discussions through
/// GraphQL, and a ground truth of what polls could see.
@Suite("Real GitHub behaviour", .timeLimit(.minutes(1)))
struct RealBehaviourTests {
    @Test("with thread bumps a user has one thread per subject; the listing shows its current version only")
    func oneThreadPerSubject() async throws {
        try await withSimulator({
            $0.threadBumps = true
            $0.historyItems = 300
            $0.users = 2
        }) { simulator in
            let user = simulator.users[0]
            let threads = try await walkPages(
                "\(simulator.baseURL)/notifications?all=true&per_page=50", token: user.token
            ).flatMap { $0.jsonArray ?? [] }
            let ids = threads.compactMap { $0["id"] as? String }
            #expect(Set(ids).count == ids.count, "each thread listed once, in its current version")
            let subjects = threads.compactMap { ($0["subject"] as? [String: Any])?["url"] as? String }
            #expect(Set(subjects).count == subjects.count, "one thread per issue or pull request")
            let truth = try simulator.truth(login: user.login, from: Date().addingTimeInterval(-86_400), to: Date())
            let superseded = truth.filter { $0.supersededAt != nil }
            #expect(!superseded.isEmpty, "new activity re-bumped threads")
            let listedUpdate = Dictionary(
                uniqueKeysWithValues: threads.compactMap { t in
                    (t["id"] as? String).flatMap { id in (t["updated_at"] as? String).map { (id, $0) } }
                })
            for version in superseded {
                let parts = version.id.split(separator: ":", maxSplits: 3).map(String.init)
                // The thread is listed once, in a newer version.
                #expect(listedUpdate[parts[2]].map { $0 > parts[3] } == true, "\(version.id)")
                #expect((version.supersededAt ?? .distantPast) >= version.occurredAt)
            }
            // Listed versions are exactly the current ones.
            let listed = Set(
                threads.compactMap { t in
                    (t["id"] as? String).flatMap { id in
                        (t["updated_at"] as? String).map { "github:notification:\(id):\($0)" }
                    }
                })
            #expect(listed.isDisjoint(with: superseded.map(\.id)))
            #expect(
                truth.contains { $0.kind != "" && $0.sourceURL.contains("/discussions/") },
                "Discussions are in the truth")
        }
    }

    @Test("with thread bumps, a second notification about the same issue re-bumps its thread")
    func secondNotificationReBumps() async throws {
        try await withSimulator({
            $0.threadBumps = true
            $0.historyItems = 0
        }) { simulator in
            let user = simulator.users[0]
            let first = try simulator.addNotification(
                for: user.login, reason: "assign", repo: "octo/app", number: 3, at: Date().addingTimeInterval(-60))
            let second = try simulator.addNotification(
                for: user.login, reason: "comment", repo: "octo/app", number: 3, commentBody: "news",
                at: Date().addingTimeInterval(-10))
            #expect(second == first)
            let listing = try await send("\(simulator.baseURL)/notifications?all=true", token: user.token)
            let threads = try #require(listing.jsonArray)
            #expect(threads.count == 1)
            // GitHub keeps the thread's reason when the news is only a comment; the truth tells it as a comment.
            #expect(threads.first?["reason"] as? String == "assign")
            let truth = try simulator.truth(login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            #expect(truth.map(\.kind).sorted() == ["assign", "comment"])
            #expect(truth.first { $0.kind == "assign" }?.supersededAt != nil)
        }
    }

    @Test("an event shows up only after its lag; the feed's ETag changes when it does")
    func lateEvent() async throws {
        try await withSimulator({ $0.historyItems = 0 }) { simulator in
            let user = simulator.users[0]
            let url = "\(simulator.baseURL)/users/\(user.login)/events?per_page=100"
            let prompt = try simulator.addEvent(for: user.login, type: "IssuesEvent", at: Date().addingTimeInterval(-5))
            let late = try simulator.addEvent(
                for: user.login, type: "IssuesEvent", at: Date().addingTimeInterval(-600), appearsAfter: .seconds(606))
            let first = try await send(url, token: user.token)
            #expect(first.jsonArray?.compactMap { $0["id"] as? String } == [prompt])
            let etag = try #require(first.header("etag"))
            let polled = try simulator.polledTruth(
                login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            #expect(polled.seen.map(\.id) == ["github:event:\(prompt)"], "not yet visible, so no poll saw it")
            let appeared = try await eventuallyHolds(within: .seconds(20)) {
                let page = try await send(url, token: user.token, headers: [("If-None-Match", etag)])
                return page.status == 200 && page.jsonArray?.compactMap { $0["id"] as? String } == [prompt, late]
            }
            #expect(appeared, "the late event appears below the newer one, and the page is no longer 304")
            let after = try simulator.polledTruth(
                login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            #expect(Set(after.required.map(\.id)) == ["github:event:\(prompt)", "github:event:\(late)"])
            let truth = try simulator.truth(login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            let lateTruth = try #require(truth.first { $0.id == "github:event:\(late)" })
            #expect(lateTruth.visibleFrom.timeIntervalSince(lateTruth.occurredAt) >= 602)
        }
    }

    @Test("a version replaced before any listing is in the truth but not in what polls saw")
    func polledTruth() async throws {
        try await withSimulator({ $0.historyItems = 0 }) { simulator in
            let user = simulator.users[0]
            let thread = try simulator.addNotification(
                for: user.login, reason: "comment", commentBody: "first", at: Date().addingTimeInterval(-60))
            try simulator.touchThread(thread, at: Date().addingTimeInterval(-30), commentBody: "second")
            _ = try await send("\(simulator.baseURL)/notifications?all=true", token: user.token)
            let all = try simulator.truth(login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            #expect(all.count == 2)
            let polled = try simulator.polledTruth(
                login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            let current = try #require(all.first { $0.supersededAt == nil })
            #expect(polled.seen.map(\.id) == [current.id])
            #expect(polled.required.map(\.id) == [current.id])
            // Re-bumped after that listing and before the next: the version a page delivered stays required (the
            // client was handed it), and the new one is required too.
            try simulator.touchThread(thread, at: Date(), commentBody: "third")
            _ = try await send("\(simulator.baseURL)/notifications?all=true", token: user.token)
            let later = try simulator.polledTruth(
                login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            #expect(Set(later.seen.map(\.id)).count == 2)
            #expect(later.seen.map(\.id).contains(current.id))
            #expect(later.required.count == 2)
            #expect(later.required.map(\.id).contains(current.id))
        }
    }

    @Test("a version re-bumped between a 304 and the next listing is seen but not required")
    func polledTruthWithoutDelivery() async throws {
        try await withSimulator({ $0.historyItems = 0 }) { simulator in
            let user = simulator.users[0]
            let url = "\(simulator.baseURL)/notifications?all=true"
            let thread = try simulator.addNotification(
                for: user.login, reason: "comment", commentBody: "first", at: Date().addingTimeInterval(-60))
            let first = try await send(url, token: user.token)
            let modified = try #require(first.header("last-modified"))
            try simulator.touchThread(thread, at: Date().addingTimeInterval(-30), commentBody: "second")
            // A poll whose page was cut delivers nothing; a version only ever listed there is seen, not required.
            simulator.injectFault(.malformedJSON, count: 1, pathPrefix: "/notifications")
            _ = try await send(url, token: user.token, headers: [("If-Modified-Since", modified)])
            try simulator.touchThread(thread, at: Date(), commentBody: "third")
            let all = try simulator.truth(login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            #expect(all.count == 3)
            let second = try #require(all.sorted { $0.occurredAt < $1.occurredAt }.dropFirst().first)
            let polled = try simulator.polledTruth(
                login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            #expect(polled.seen.map(\.id).contains(second.id))
            #expect(!polled.required.map(\.id).contains(second.id))
        }
    }

    @Test("an event is required once a 200 page delivered it, not merely because it was visible at a poll")
    func polledTruthOfEvents() async throws {
        try await withSimulator({ $0.historyItems = 0 }) { simulator in
            let user = simulator.users[0]
            let older = try simulator.addEvent(for: user.login, type: "IssuesEvent", at: Date().addingTimeInterval(-20))
            let newer = try simulator.addEvent(for: user.login, type: "IssuesEvent", at: Date().addingTimeInterval(-10))
            let page = try await send("\(simulator.baseURL)/users/\(user.login)/events?per_page=1", token: user.token)
            #expect(page.jsonArray?.compactMap { $0["id"] as? String } == [newer])
            let polled = try simulator.polledTruth(
                login: user.login, from: Date().addingTimeInterval(-3_600), to: Date())
            #expect(Set(polled.seen.map(\.id)) == ["github:event:\(older)", "github:event:\(newer)"])
            #expect(polled.required.map(\.id) == ["github:event:\(newer)"], "page 2 was never read")
        }
    }

    @Test("GraphQL serves a repository's discussions, newest update first, with the latest comment")
    func graphQLDiscussions() async throws {
        try await withSimulator({ $0.historyItems = 0 }) { simulator in
            let user = simulator.users[0]
            try simulator.addNotification(
                for: user.login, reason: "author", subjectType: "Discussion", repo: "octo/talk", title: "Older",
                actor: user.login, at: Date().addingTimeInterval(-120))
            let thread = try simulator.addNotification(
                for: user.login, reason: "mention", subjectType: "Discussion", repo: "octo/talk", title: "Newer",
                actor: "ada-sim", commentBody: "@\(user.login) look", at: Date().addingTimeInterval(-60))
            let listing = try await send("\(simulator.baseURL)/notifications?all=true", token: user.token)
            let listed = try #require(listing.jsonArray?.first { $0["id"] as? String == thread })
            let subject = try #require(listed["subject"] as? [String: Any])
            #expect(subject["type"] as? String == "Discussion")
            #expect(subject["url"] is NSNull, "GitHub gives a Discussion no REST subject")
            let query =
                #"{"query":"query { repository { discussions { nodes { number } } } }","variables":{"owner":"octo","name":"talk","first":10}}"#
            let answer = try await send("\(simulator.baseURL)/graphql", method: .POST, token: user.token, body: query)
            #expect(answer.status == 200)
            let nodes = try #require(
                ((answer.jsonObject?["data"] as? [String: Any])?["repository"] as? [String: Any]).flatMap {
                    ($0["discussions"] as? [String: Any])?["nodes"] as? [[String: Any]]
                })
            #expect(nodes.compactMap { $0["title"] as? String } == ["Newer", "Older"])
            let url = try #require(nodes.first?["url"] as? String)
            #expect(url.hasPrefix("https://github.com/octo/talk/discussions/"))
            let comment = ((nodes.first?["comments"] as? [String: Any])?["nodes"] as? [[String: Any]])?.first
            #expect(comment?["body"] as? String == "@\(user.login) look")
            #expect((comment?["url"] as? String)?.hasPrefix("\(url)#discussioncomment-") == true)
            let noToken = try await send("\(simulator.baseURL)/graphql", method: .POST, body: query)
            #expect(noToken.status == 401)
        }
    }
}
