import ActivitySyncTesting
import Foundation
import GitHubSimulator
import IntegrationCatalog
import SyncModel
import Testing

@testable import GitHub

/// The sync against GitHub as it really behaves (issue 10): threads re-bumped by new activity, events that show up
/// late, Discussions, subjects that never load, and the size of the state every job writes.
@Suite("GitHub as it really behaves", .timeLimit(.minutes(2)))
struct RealGitHubBehaviourTests {
    /// Ids emitted over several syncs must be exactly what polls could see: every required one, nothing unseen,
    /// nothing twice.
    private func expectMatchesPolledTruth(
        _ emitted: [Activity], _ truth: PolledTruth, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let ids = emitted.map(\.id)
        #expect(Set(ids).count == ids.count, "an id repeats", sourceLocation: sourceLocation)
        let missing = Set(truth.required.map(\.id)).subtracting(ids)
        #expect(missing.isEmpty, "lost: \(missing.sorted())", sourceLocation: sourceLocation)
        let unseen = Set(ids).subtracting(truth.seen.map(\.id))
        #expect(unseen.isEmpty, "never listed by any poll: \(unseen.sorted())", sourceLocation: sourceLocation)
    }

    /// New activity on `thread` (a comment by grace-sim, at `at` or when it happens) right after the next
    /// notifications page served to the user was made: deterministically between that page and the next request.
    private func commentAfterFirstPage(
        _ github: SimulatedGitHub, on thread: String, _ body: String, at: Date? = nil
    ) throws {
        let simulator = github.simulator
        try simulator.afterNotificationPages(1, for: github.user.login) {
            try? simulator.touchThread(thread, at: at ?? Date(), commentBody: body, actor: "grace-sim")
        }
    }

    @Test func aThreadReBumpedDuringAMultiPageListingPushesNothingPastAPageBoundary() async throws {
        try await SimulatedGitHub.with(
            {
                $0.historyItems = 0
                $0.threadBumps = true
            }, integration: { $0.notificationsPerPage = 3 }
        ) { github in
            let user = github.user
            let now = Date()
            // Twelve threads a minute apart: four pages of three.
            var threads: [String] = []
            for index in 0..<12 {
                threads.append(
                    try github.simulator.addNotification(
                        for: user.login, reason: "assign", title: "Thread \(index)",
                        at: now.addingTimeInterval(Double(-60 * (12 - index)))))
            }
            let versionsBefore = Set(
                try github.simulator.truth(login: user.login, from: now.addingTimeInterval(-3_600), to: now).map(\.id))
            #expect(versionsBefore.count == 12)
            let mark = github.simulator.requests().count
            // New activity on the newest thread right after page 1 (which listed it) was made: GitHub moves it to
            // the top, out of the listing's window. With page numbers, page 2 would now start one thread later and
            // skip one.
            let newest = try #require(threads.last)
            let touchedAt = Date()
            try commentAfterFirstPage(github, on: newest, "bumped", at: touchedAt)
            let simulator = github.simulator
            let first = try await github.sync(user, state: nil)
            let bumped = try simulator.truth(login: user.login, from: now.addingTimeInterval(-3_600), to: Date())
            #expect(bumped.contains { $0.id.hasPrefix("github:notification:\(newest):") && $0.supersededAt != nil })
            #expect(first.isComplete)
            #expect(
                github.requests(of: user.login, since: mark).filter { $0.path == "/notifications" }.count >= 4,
                "the listing really spanned several pages")
            #expect(versionsBefore.isSubset(of: first.activities.map(\.id)), "every version listed was emitted")
            // The bumped version is the next sync's news.
            // The next sync lists up to its own start, whole seconds excluded: it must start after the touch's second.
            try await eventually(
                "the clock passed the re-bump's second", timeout: .seconds(5), interval: .milliseconds(20)
            ) {
                Date().timeIntervalSince1970 >= touchedAt.timeIntervalSince1970.rounded(.down) + 1.05
            }
            let second = try await github.sync(user, state: first.state)
            #expect(second.activities.map(\.id).count == 1)
            #expect(second.activities.first?.id.hasPrefix("github:notification:\(newest):") == true)
            let all = first.activities + second.activities
            expectMatchesPolledTruth(
                all,
                try github.simulator.polledTruth(login: user.login, from: now.addingTimeInterval(-3_600), to: Date()))
            #expect(
                (second.githubState.lastSyncTime ?? .distantPast) > (first.githubState.lastSyncTime ?? .distantFuture))
        }
    }

    @Test func aBusyWorldWithReBumpsAndLateEventsLosesNothingAPollCouldSee() async throws {
        try await SimulatedGitHub.with(
            {
                $0.threadBumps = true
                $0.eventLag = .seconds(3)
                $0.activityInterval = .milliseconds(250)
                $0.historyItems = 60
                $0.latency = .milliseconds(10)
            },
            integration: {
                $0.notificationsPerPage = 4; $0.eventsPerPage = 5
            }
        ) { github in
            let user = github.user
            let start = Date()
            var state: JSONValue?
            var emitted: [Activity] = []
            // Syncs back to back for a while, then until everything visible so far has been emitted.
            while Date() < start.addingTimeInterval(6) {
                let outcome = try await github.sync(user, state: state)
                #expect(outcome.isComplete)
                emitted += outcome.activities
                state = outcome.state
            }
            let quiet = Date()
            try await eventually("every required activity emitted", timeout: .seconds(30), interval: .milliseconds(200))
            {
                let outcome = try await github.sync(user, state: state)
                emitted += outcome.activities
                state = outcome.state
                let truth = try github.simulator.polledTruth(
                    login: user.login, from: start.addingTimeInterval(-86_400), to: quiet)
                return Set(truth.required.map(\.id)).isSubset(of: emitted.map(\.id))
            }
            let truth = try github.simulator.polledTruth(
                login: user.login, from: start.addingTimeInterval(-86_400), to: Date())
            expectMatchesPolledTruth(emitted, truth)
            let all = try github.simulator.truth(login: user.login, from: start.addingTimeInterval(-86_400), to: Date())
            #expect(all.contains { $0.supersededAt != nil }, "threads really were re-bumped")
            // Discussions go through GraphQL, answered later than the listing: their texts must still be those of
            // the version emitted.
            let expectedById = Dictionary(all.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            let discussions = emitted.filter { $0.sourceURL.contains("/discussions") }
            for activity in discussions {
                expectActivity(activity, matches: try #require(expectedById[activity.id]))
            }
            #expect(
                all.contains { $0.id.hasPrefix("github:event:") && $0.visibleFrom > $0.occurredAt },
                "events really showed up late")
            #expect(emitted.contains { $0.id.hasPrefix("github:event:") })
            #expect((state.flatMap { try? GitHubState(json: $0) })?.gaps.isEmpty == true)
        }
    }

    @Test func anEventThatAppearsMinutesOrHoursLateIsEmittedOnceWhenItAppears() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let now = Date()
            let prompt = try github.simulator.addEvent(
                for: user.login, type: "IssuesEvent", title: "On time", at: now.addingTimeInterval(-5))
            let first = try await github.sync(user, state: nil)
            #expect(first.activities.map(\.id) == ["github:event:\(prompt)"])
            #expect(first.githubState.eventsETag != nil, "an unchanged feed can be asked for with If-None-Match")
            // Appearing only now, after the first sync (added after it, so no machine is too slow for the test):
            // one created long before the prompt one (far beyond the 2-minute overlap), one created hours ago.
            let late = try github.simulator.addEvent(
                for: user.login, type: "IssueCommentEvent", title: "Late by minutes", at: now.addingTimeInterval(-300))
            let later = try github.simulator.addEvent(
                for: user.login, type: "PullRequestEvent", title: "Late by hours", at: now.addingTimeInterval(-7_000))
            var state = first.state
            var emitted = first.activities
            try await eventually("both late events emitted", timeout: .seconds(20), interval: .milliseconds(300)) {
                let outcome = try await github.sync(user, state: state)
                #expect(outcome.isComplete)
                emitted += outcome.activities
                state = outcome.state
                return Set(emitted.map(\.id)).isSuperset(of: ["github:event:\(late)", "github:event:\(later)"])
            }
            let ids = emitted.map(\.id)
            #expect(Set(ids).count == ids.count)
            let comment = try #require(emitted.first { $0.id == "github:event:\(late)" })
            #expect(comment.commentURL?.contains("#issuecomment-") == true, "the comment's permalink")
            #expect(comment.sourceURL.hasSuffix("/issues/\(comment.number ?? -1)"))
            let final = try GitHubState(json: state)
            #expect(final.gaps.isEmpty)
            #expect(
                final.lastUserEventTime == Date(timeIntervalSince1970: (now.timeIntervalSince1970 - 5).rounded(.down)))
            // Nothing new: the next events read is a free 304 and emits nothing.
            let mark = github.simulator.requests().count
            let again = try await github.sync(user, state: state)
            #expect(again.activities.isEmpty)
            let reads = github.requests(of: user.login, since: mark).filter { $0.path.hasSuffix("/events") }
            #expect(reads.count == 1)
            #expect(reads.allSatisfy { $0.notModified && !$0.countedAgainstQuota })
        }
    }

    @Test func aLateEventBelowAnUnchangedFirstPageIsEmittedWithTheNextNewEvent() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }, integration: { $0.eventsPerPage = 2 }) { github in
            let user = github.user
            let now = Date()
            var prompt: [String] = []
            for offset in [50.0, 40, 30, 20, 10] {
                prompt.append(
                    try github.simulator.addEvent(
                        for: user.login, type: "IssuesEvent", at: now.addingTimeInterval(-offset)))
            }
            let first = try await github.sync(user, state: nil)
            #expect(Set(first.activities.map(\.id)) == Set(prompt.map { "github:event:\($0)" }))
            // Appears only now, created between the prompt ones (added after the first sync, so no machine is too
            // slow for the test).
            let late = try github.simulator.addEvent(
                for: user.login, type: "IssuesEvent", at: now.addingTimeInterval(-35))
            // It sits on page 2 of 2-event pages; page 1 did not change, so the unchanged account costs nothing.
            let second = try await github.sync(user, state: first.state)
            #expect(second.activities.isEmpty)
            let newer = try github.simulator.addEvent(for: user.login, type: "IssuesEvent", at: Date())
            let third = try await github.sync(user, state: second.state)
            #expect(Set(third.activities.map(\.id)) == ["github:event:\(newer)", "github:event:\(late)"])
        }
    }

    @Test func aDiscussionNotificationBecomesAnActivityWithItsPage() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let before = Date()
            let mention = try github.simulator.addNotification(
                for: user.login, reason: "mention", subjectType: "Discussion", repo: "octo/app", title: "RFC: plugins",
                actor: "ada-sim", commentBody: "@\(user.login) what do you think?", at: before.addingTimeInterval(-30))
            let authored = try github.simulator.addNotification(
                for: user.login, reason: "author", subjectType: "Discussion", repo: "octo/app", title: "Show and tell",
                actor: user.login, at: before.addingTimeInterval(-20))
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            let truth = try github.simulator.truth(login: user.login, from: before.addingTimeInterval(-60), to: before)
            #expect(truth.count == 2)
            let byId = Dictionary(uniqueKeysWithValues: outcome.activities.map { ($0.id, $0) })
            for expected in truth {
                expectActivity(try #require(byId[expected.id]), matches: expected)
            }
            let mentioned = try #require(
                outcome.activities.first { $0.id.hasPrefix("github:notification:\(mention):") })
            #expect(mentioned.text.hasPrefix("ada-sim mentioned \(user.login) in octo/app discussion #"))
            #expect(mentioned.sourceURL.hasPrefix("https://github.com/octo/app/discussions/"))
            #expect(mentioned.commentURL?.contains("#discussioncomment-") == true)
            #expect(outcome.activities.contains { $0.id.hasPrefix("github:notification:\(authored):") })
            // One GraphQL query for the repository, on the configured host.
            let graphQL = github.requests(of: user.login).filter { $0.path == "/graphql" }
            #expect(graphQL.count == 1)
            #expect(graphQL.allSatisfy { $0.method == "POST" && $0.status == 200 })
        }
    }

    /// A quiet simulator and a client that gives a subject up after three failed syncs, one attempt each.
    private func withGiveUpAfterThreeSyncs(
        threadBumps: Bool = false, _ body: (SimulatedGitHub) async throws -> Void
    ) async throws {
        try await SimulatedGitHub.with(
            {
                $0.historyItems = 0; $0.threadBumps = threadBumps
            },
            integration: {
                $0.maxAttempts = 1; $0.stuckSubjectSyncs = 3
            }, body)
    }

    @Test func aSubjectThatFailsEverySyncIsEmittedFromTheNotificationAfterNSyncs() async throws {
        try await withGiveUpAfterThreeSyncs { github in
            let user = github.user
            let updatedAt = Date().addingTimeInterval(-30)
            let thread = try github.simulator.addNotification(
                for: user.login, reason: "assign", repo: "octo/stuck", number: 77, title: "Never loads", at: updatedAt)
            let discussion = try github.simulator.addNotification(
                for: user.login, reason: "comment", subjectType: "Discussion", repo: "octo/stuck",
                title: "Unreachable", commentBody: "hello", at: updatedAt.addingTimeInterval(5))
            github.simulator.injectFault(.serverError, count: 1_000, pathPrefix: "/repos/octo/stuck/issues/77")
            github.simulator.injectFault(.serverError, count: 1_000, pathPrefix: "/graphql")
            var state: JSONValue?
            for attempt in 1...2 {
                let outcome = try await github.sync(user, state: state)
                guard case .partial = outcome.status else {
                    Issue.record("sync \(attempt): expected partial, got \(outcome.status)")
                    return
                }
                #expect(outcome.activities.isEmpty)
                #expect((outcome.githubState.lastSyncTime ?? .distantFuture) < updatedAt, "the watermark waits")
                #expect(outcome.githubState.stuck.count == 2)
                state = outcome.state
            }
            let third = try await github.sync(user, state: state)
            #expect(third.isComplete)
            let ids = third.activities.map(\.id)
            #expect(ids.count == 2)
            #expect(ids.contains { $0.hasPrefix("github:notification:\(thread):") })
            #expect(ids.contains { $0.hasPrefix("github:notification:\(discussion):") })
            let issue = try #require(third.activities.first { $0.id.hasPrefix("github:notification:\(thread):") })
            #expect(issue.text == "Issue #77 assigned to \(user.login) in octo/stuck: Never loads")
            #expect(issue.sourceURL == "https://github.com/octo/stuck/issues/77")
            let fallback = try #require(
                third.activities.first { $0.id.hasPrefix("github:notification:\(discussion):") })
            #expect(fallback.sourceURL == "https://github.com/octo/stuck/discussions")
            #expect(fallback.text == "GitHub notification for \(user.login) in octo/stuck discussion: Unreachable")
            let state3 = third.githubState
            #expect(state3.stuck.isEmpty)
            #expect(Set(state3.gaps.map(\.source)) == ["subject:\(thread)", "subject:\(discussion)"])
            #expect((state3.lastSyncTime ?? .distantPast) >= updatedAt.addingTimeInterval(4), "the watermark moved")
            let fourth = try await github.sync(user, state: third.state)
            #expect(fourth.activities.isEmpty, "given up once, not again")
        }
    }

    @Test func aSubjectFailingForLongerThanTheAgeLimitIsGivenUpWithoutWaitingForNSyncs() async throws {
        try await SimulatedGitHub.with(
            { $0.historyItems = 0 },
            integration: {
                $0.maxAttempts = 1
                $0.stuckSubjectSyncs = 100
                $0.stuckSubjectAge = .seconds(1)
            }
        ) { github in
            let user = github.user
            let updatedAt = Date().addingTimeInterval(-30)
            let thread = try github.simulator.addNotification(
                for: user.login, reason: "review_requested", subjectType: "PullRequest", repo: "octo/slow", number: 9,
                title: "Flaky subject", at: updatedAt)
            github.simulator.injectFault(.serverError, count: 1_000, pathPrefix: "/repos/octo/slow/pulls/9")
            let first = try await github.sync(user, state: nil)
            #expect(first.activities.isEmpty)
            let since = try #require(first.githubState.stuck.values.first?.since)
            var state = first.state
            var emitted: [Activity] = []
            try await eventually("given up after the age limit", timeout: .seconds(10), interval: .milliseconds(200)) {
                let outcome = try await github.sync(user, state: state)
                state = outcome.state
                emitted += outcome.activities
                return !emitted.isEmpty
            }
            #expect(Date().timeIntervalSince(since) >= 1, "not before the age limit")
            #expect(
                emitted.map(\.id) == [
                    "github:notification:\(thread):\(WireFormat.formatDate(Date(timeIntervalSince1970: updatedAt.timeIntervalSince1970.rounded(.down))))"
                ])
            #expect(emitted.first?.text == "\(user.login) requested to review PR #9 in octo/slow: Flaky subject")
            #expect(emitted.first?.sourceURL == "https://github.com/octo/slow/pull/9")
        }
    }

    @Test func aBusyAccountsStateRecordStaysUnderTwoKilobytes() async throws {
        try await SimulatedGitHub.with({
            $0.historyItems = 400
            $0.threadBumps = true
            $0.activityInterval = .milliseconds(200)
        }) { github in
            let user = github.user
            var state: JSONValue?
            var emitted = 0
            var sizes: [Int] = []
            for _ in 0..<4 {
                let outcome = try await github.sync(user, state: state)
                #expect(outcome.isComplete)
                emitted += outcome.activities.count
                state = outcome.state
                let record = StateRecord(
                    accountId: String(user.id), integration: "github",
                    lastJob: JobMarker(jobId: "\(user.id)@2026-12-01T04:05:00Z", scheduledAt: Date()),
                    updatedAt: Date(), data: outcome.state)
                sizes.append(try WireFormat.encode(record).count)
            }
            #expect(emitted > 100, "a busy account: \(emitted) activities")
            // Bounded by what happened within the re-read overlap, not by history: it levels off after the first
            // syncs (under 2 KB on an idle machine; a loaded one syncs slower, so more falls inside the overlap).
            #expect(sizes.allSatisfy { $0 < 4_096 }, "state record bytes: \(sizes)")
            #expect(sizes[3] <= sizes[1] + 512, "no growth with history: \(sizes)")
            let final = try GitHubState(json: state)
            #expect(final.lastSyncTime != nil && final.lastUserEventTime != nil && final.username == user.login)
        }
    }

    @Test func aThreadReBumpedEverySyncWhileItsSubjectFailsIsStillGivenUpAndNoListedVersionIsLost() async throws {
        try await withGiveUpAfterThreeSyncs(threadBumps: true) { github in
            let user = github.user
            let start = Date().addingTimeInterval(-60)
            let thread = try github.simulator.addNotification(
                for: user.login, reason: "assign", repo: "octo/bumpy", number: 5, title: "Keeps moving", at: start)
            github.simulator.injectFault(.serverError, count: 1_000, pathPrefix: "/repos/octo/bumpy/issues/5")
            var state: JSONValue?
            var emitted: [Activity] = []
            for attempt in 1...3 {
                if attempt > 1 {
                    // New activity between syncs: the same thread, a newer updated_at, listed as a new version.
                    try github.simulator.touchThread(thread, at: start.addingTimeInterval(Double(10 * attempt)))
                }
                let outcome = try await github.sync(user, state: state)
                emitted += outcome.activities
                state = outcome.state
                if attempt < 3 {
                    #expect(outcome.activities.isEmpty, "sync \(attempt) waits for the subject")
                    #expect(outcome.githubState.stuck[thread]?.failures == attempt, "failures count per thread")
                }
            }
            let final = try GitHubState(json: state)
            #expect(final.stuck.isEmpty, "given up after three syncs")
            #expect(
                (final.lastSyncTime ?? .distantPast) >= start.addingTimeInterval(30).addingTimeInterval(-1),
                "the watermark moved")
            let versions = try github.simulator.truth(
                login: user.login, from: start.addingTimeInterval(-60), to: Date()
            ).map(\.id)
            #expect(versions.count == 3)
            #expect(Set(emitted.map(\.id)) == Set(versions), "every listed version emitted, from the notification")
            #expect(emitted.count == 3)
            #expect(emitted.allSatisfy { $0.text == "Issue #5 assigned to \(user.login) in octo/bumpy: Keeps moving" })
            let fourth = try await github.sync(user, state: state)
            #expect(fourth.activities.isEmpty, "given up once, not again")
        }
    }

    @Test func aResyncKeepsTheEventIdsItDidNotReadSoTheNextSyncRepeatsNone() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let now = Date()
            var old: [String] = []
            for offset: Double in [18_000, 10_800, 1_800] {
                old.append(
                    try github.simulator.addEvent(
                        for: user.login, type: "IssuesEvent", at: now.addingTimeInterval(-offset)))
            }
            let first = try await github.sync(user, state: nil)
            #expect(Set(first.activities.map(\.id)) == Set(old.map { "github:event:\($0)" }))
            // A resync of the last hour re-emits (by design) only what it reads: the 30-minute-old event.
            let resync = try await github.sync(user, state: first.state, since: now.addingTimeInterval(-3_600))
            #expect(resync.activities.map(\.id) == ["github:event:\(old[2])"])
            // Something new, so the next read is not a 304 and goes down to the lag horizon again.
            let newer = try github.simulator.addEvent(for: user.login, type: "IssuesEvent", at: Date())
            let next = try await github.sync(user, state: resync.state)
            #expect(next.activities.map(\.id) == ["github:event:\(newer)"], "events known before the resync repeat")
        }
    }

    @Test func anIncompleteEventsReadKeepsItsKnownIdsSortedAndBounded() async throws {
        try await SimulatedGitHub.with(
            { $0.historyItems = 0 },
            integration: {
                $0.eventHistoryLimit = 4; $0.maxAttempts = 1
            }
        ) { github in
            let user = github.user
            let now = Date()
            var ids: [String] = []
            for offset in 1...6 {
                ids.append(
                    try github.simulator.addEvent(
                        for: user.login, type: "IssuesEvent", at: now.addingTimeInterval(Double(-60 * offset))))
            }
            let first = try await github.sync(user, state: nil)
            #expect(first.activities.count == 6)
            try github.simulator.addEvent(for: user.login, type: "IssuesEvent", at: Date())
            github.simulator.injectFault(.serverError, count: 1, pathPrefix: "/users/")
            let second = try await github.sync(user, state: first.state)
            #expect(second.activities.isEmpty)
            let sorted = ids.sorted { ($0.count, $0) < ($1.count, $1) }
            #expect(second.githubState.eventIds == Array(sorted.suffix(4)), "the newest ids, in order")
        }
    }

    @Test func aGraphQLRateLimitAnsweredWith200IsRetriedNotEmittedWithTheFallback() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let before = Date()
            try github.simulator.addNotification(
                for: user.login, reason: "comment", subjectType: "Discussion", repo: "octo/app", title: "Roadmap",
                actor: "ada-sim", commentBody: "Shipping in May", at: before.addingTimeInterval(-30))
            github.simulator.injectFault(.graphQLRateLimited, count: 1, pathPrefix: "/graphql")
            let first = try await github.sync(user, state: nil)
            #expect(first.activities.isEmpty, "not emitted for good with the fallback text")
            guard case .partial = first.status else {
                Issue.record("expected partial, got \(first.status)")
                return
            }
            #expect(first.githubState.stuck.count == 1, "counts towards giving up")
            let second = try await github.sync(user, state: first.state)
            #expect(second.isComplete)
            let truth = try github.simulator.truth(login: user.login, from: before.addingTimeInterval(-60), to: before)
            #expect(truth.count == 1)
            let activity = try #require(second.activities.first)
            expectActivity(activity, matches: try #require(truth.first))
        }
    }

    @Test func aDiscussionActivityShowsTheCommentOfItsVersionNotOneAddedSince() async throws {
        try await SimulatedGitHub.with({
            $0.historyItems = 0; $0.threadBumps = true
        }) { github in
            let user = github.user
            let before = Date()
            let thread = try github.simulator.addNotification(
                for: user.login, reason: "mention", subjectType: "Discussion", repo: "octo/app", title: "RFC: caching",
                actor: "ada-sim", commentBody: "@\(user.login) thoughts?", at: before.addingTimeInterval(-30))
            // A newer comment lands after the listing, before the GraphQL query: it belongs to the next version.
            try commentAfterFirstPage(github, on: thread, "never mind")
            let simulator = github.simulator
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            let truth = try simulator.truth(
                login: user.login, from: before.addingTimeInterval(-60), to: before.addingTimeInterval(-30))
            let expected = try #require(truth.first)
            let activity = try #require(outcome.activities.first { $0.id == expected.id })
            expectActivity(activity, matches: expected)
            #expect(activity.actor == "ada-sim")
        }
    }

    @Test func aNotificationInTheOverlapsFirstSecondIsNotEmittedTwice() async throws {
        try await SimulatedGitHub.with({ $0.historyItems = 0 }) { github in
            let user = github.user
            let first = try await github.sync(user, state: nil)
            // A first sync of an empty account leaves a watermark with a fraction of a second.
            let watermark = try #require(first.githubState.lastSyncTime)
            let floorSecond = Date(timeIntervalSince1970: (watermark.timeIntervalSince1970 - 120).rounded(.down))
            try #require(floorSecond < watermark.addingTimeInterval(-120), "the watermark has a fraction")
            // Listed by the next sync's since (whole seconds, rounded down), so it must also be remembered.
            let edge = try github.simulator.addNotification(
                for: user.login, reason: "assign", title: "On the edge", at: floorSecond)
            let second = try await github.sync(user, state: first.state)
            #expect(second.activities.map(\.id).contains { $0.hasPrefix("github:notification:\(edge):") })
            let newer = try github.simulator.addNotification(
                for: user.login, reason: "assign", title: "Newer", at: Date().addingTimeInterval(-5))
            let third = try await github.sync(user, state: second.state)
            #expect(third.activities.count == 1, "the edge one again: \(third.activities.map(\.id))")
            #expect(third.activities.first?.id.hasPrefix("github:notification:\(newer):") == true)
        }
    }

    @Test(arguments: ["assign", "subscribed"])
    func aFailedVersionIsEmittedFromItsNotificationWhenTheThreadMovesOn(newReason: String) async throws {
        try await withGiveUpAfterThreeSyncs(threadBumps: true) { github in
            let user = github.user
            let start = Date().addingTimeInterval(-60)
            let thread = try github.simulator.addNotification(
                for: user.login, reason: "assign", repo: "octo/moving", number: 3, title: "Moves on", at: start)
            github.simulator.injectFault(.serverError, count: 1, pathPrefix: "/repos/octo/moving/issues/3")
            let first = try await github.sync(user, state: nil)
            #expect(first.activities.isEmpty)
            #expect(first.githubState.stuck[thread]?.superseded.count == 1, "the failed version is kept")
            // The thread moves on before its subject ever loaded: GitHub will not list the first version again.
            try github.simulator.touchThread(thread, at: start.addingTimeInterval(20), reason: newReason)
            let second = try await github.sync(user, state: first.state)
            #expect(second.isComplete)
            let versions = try github.simulator.truth(
                login: user.login, from: start.addingTimeInterval(-60), to: Date()
            ).map(\.id)
            #expect(Set(second.activities.map(\.id)) == Set(versions), "every listed version")
            let firstVersion = "github:notification:\(thread):\(WireFormat.formatDate(start.roundedDownToSecond))"
            let fallback = try #require(second.activities.first { $0.id == firstVersion })
            #expect(fallback.text == "Issue #3 assigned to \(user.login) in octo/moving: Moves on")
            #expect(second.githubState.stuck.isEmpty)
            #expect(second.githubState.gaps.map(\.source) == ["subject:\(thread)"])
        }
    }

    @Test func aDiscussionSharingItsTitleIsNeverMatchedToTheWrongOne() async throws {
        try await SimulatedGitHub.with({
            $0.historyItems = 0; $0.threadBumps = true
        }) { github in
            let user = github.user
            let now = Date()
            let first = try github.simulator.addNotification(
                for: user.login, reason: "comment", subjectType: "Discussion", repo: "octo/team", title: "Weekly sync",
                actor: "ada-sim", commentBody: "Agenda one", at: now.addingTimeInterval(-40))
            let second = try github.simulator.addNotification(
                for: user.login, reason: "comment", subjectType: "Discussion", repo: "octo/team", title: "Weekly sync",
                actor: "ada-sim", commentBody: "Agenda two", at: now.addingTimeInterval(-20))
            // The first discussion gets a comment after the listing: its updatedAt no longer names the listed
            // version, and the other one with that title is nearer in time.
            try commentAfterFirstPage(github, on: first, "Moved to Friday")
            let simulator = github.simulator
            let outcome = try await github.sync(user, state: nil)
            let truth = try simulator.truth(
                login: user.login, from: now.addingTimeInterval(-60), to: now.addingTimeInterval(-20))
            let secondExpected = try #require(truth.first { $0.id.hasPrefix("github:notification:\(second):") })
            expectActivity(
                try #require(outcome.activities.first { $0.id == secondExpected.id }), matches: secondExpected)
            let ambiguous = try #require(outcome.activities.first { $0.id.hasPrefix("github:notification:\(first):") })
            #expect(
                ambiguous.sourceURL == "https://github.com/octo/team/discussions", "the fallback, not the other one")
            #expect(ambiguous.sourceURL != secondExpected.sourceURL)
        }
    }
}

extension Date {
    fileprivate var roundedDownToSecond: Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }
}
