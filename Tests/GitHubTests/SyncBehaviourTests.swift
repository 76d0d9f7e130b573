import ActivitySyncTesting
import Foundation
import GitHubSimulator
import IntegrationCatalog
import SyncModel
import Synchronization
import Testing

@testable import GitHub

/// The sync against the real GitHub simulator: what a user of the activity stream would notice.
@Suite("GitHub sync against the simulator", .timeLimit(.minutes(2)))
struct SyncBehaviourTests {
    @Test func firstSyncProducesExactlyTheTruthAcrossSeveralPages() async throws {
        try await SimulatedGitHub.with(
            {
                $0.users = 2; $0.historyItems = 40
                // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
                $0.threadBumps = false
            },
            integration: {
                $0.notificationsPerPage = 5
                $0.eventsPerPage = 7
            }
        ) { github in
            let user = github.user
            let before = Date()
            let outcome = try await github.sync(user, state: nil)
            let after = Date()
            #expect(outcome.isComplete)
            let truth = try github.simulator.truth(
                login: user.login, from: before.addingTimeInterval(-86_400), to: after)
            #expect(!truth.isEmpty)
            let ids = outcome.activities.map(\.id)
            #expect(Set(ids).count == ids.count, "no id twice")
            #expect(Set(ids) == Set(truth.map(\.id)))
            let byId = Dictionary(uniqueKeysWithValues: outcome.activities.map { ($0.id, $0) })
            for expected in truth {
                let activity = try #require(byId[expected.id])
                expectActivity(activity, matches: expected)
                #expect(activity.accountId == String(user.id))
                #expect(!activity.sourceURL.contains(github.simulator.baseURL))
            }
            // Both kinds of texts were exercised, for issues and PRs.
            let kinds = Set(outcome.activities.map(\.kind))
            #expect(kinds.isSuperset(of: ["comment", "assign"]))
            // Several pages, each followed through Link rel="next", pinned with before=.
            let listing = github.requests(of: user.login).filter { $0.path == "/notifications" }
            #expect(listing.count > 1)
            #expect(listing.allSatisfy { ($0.query ?? "").contains("before=") })
            let eventPages = github.requests(of: user.login).filter { $0.path.hasSuffix("/events") }
            #expect(eventPages.count > 1)
            // One fetch per distinct subject URL within the sync.
            let subjects = github.requests(of: user.login).filter { $0.path.hasPrefix("/repos/") }.map(\.path)
            #expect(Set(subjects).count == subjects.count)
            // Comment/mention actors come from the latest comment when it names one: matched by the truth above.
            #expect(outcome.githubState.username == user.login)
        }
    }

    @Test func unchangedAccountCostsZeroQuota() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            let first = try await github.sync(user, state: nil)
            #expect(first.isComplete)
            let used = github.simulator.quotaUsed(token: user.token)
            let mark = github.simulator.requests().count
            let second = try await github.sync(user, state: first.state)
            #expect(second.isComplete)
            #expect(second.activities.isEmpty)
            #expect(github.simulator.quotaUsed(token: user.token) == used)
            let again = github.requests(of: user.login, since: mark)
            #expect(!again.isEmpty, "conditional requests were made (poll interval 0)")
            #expect(again.allSatisfy { $0.notModified && !$0.countedAgainstQuota })
        }
    }

    /// GitHub's event payloads since 2025-10-07 carry no pull request title or page: the activities still say them
    /// (read from `pull_request.url`), and an unchanged account then costs nothing.
    @Test func trimmedEventPayloadsStillYieldEventActivitiesAndUnchangedSyncsAreFree() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            let opened = try github.simulator.addEvent(
                for: user.login, type: "PullRequestEvent", repo: "octo/app", title: "Trim the payload")
            try github.simulator.addEvent(for: user.login, type: "PushEvent", repo: "octo/app")
            let first = try await github.sync(user, state: nil)
            #expect(first.isComplete, "\(first.status)")
            let activity = try #require(first.activities.first { $0.id == "github:event:\(opened)" })
            #expect(activity.kind == "pr_opened")
            #expect(activity.text.hasSuffix("created PR #\(activity.number ?? 0): Trim the payload"))
            #expect(activity.sourceURL == "https://github.com/octo/app/pull/\(activity.number ?? 0)")
            let truth = try github.simulator.truth(
                login: user.login, from: Date().addingTimeInterval(-86_400), to: Date())
            let events = truth.filter { $0.id.hasPrefix("github:event:") }
            #expect(events.contains { $0.kind == "pr_opened" })
            let byId = Dictionary(uniqueKeysWithValues: first.activities.map { ($0.id, $0) })
            for expected in events {
                let emitted = try #require(byId[expected.id], "lost \(expected.id)")
                expectActivity(emitted, matches: expected)
            }
            let used = github.simulator.quotaUsed(token: user.token)
            let mark = github.simulator.requests().count
            let second = try await github.sync(user, state: first.state)
            #expect(second.isComplete)
            #expect(second.activities.isEmpty)
            #expect(github.simulator.quotaUsed(token: user.token) == used)
            #expect(github.requests(of: user.login, since: mark).allSatisfy { $0.notModified })
        }
    }

    @Test func alreadyFetchedUnchangedSubjectsAreNotFetchedAgain() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            _ = try await github.sync(user, state: nil)
            let mark = github.simulator.requests().count
            let used = github.simulator.quotaUsed(token: user.token)
            // The same notifications again (a fresh state re-reads the window): every subject is revalidated
            // from the cache with If-None-Match and costs nothing.
            let again = try await github.sync(user, state: nil)
            #expect(!again.activities.isEmpty)
            // Comment lists are apart: a version whose latest_comment_url moved on reads them once. The simulator
            // generates the accounts that own the subjects read here only now, and their comments move some threads'
            // latest_comment_url between these two syncs, so a list may be read for the first time.
            let requests = github.requests(of: user.login, since: mark).filter { $0.path.hasPrefix("/repos/") }
            let lists = requests.filter { $0.path.hasSuffix("/comments") }
            let subjects = requests.filter { !$0.path.hasSuffix("/comments") }
            #expect(!subjects.isEmpty)
            #expect(
                subjects.allSatisfy { $0.notModified && !$0.countedAgainstQuota },
                "\(subjects.filter { !$0.notModified }.map { "\($0.status) \($0.path)" })")
            // Only the listing, the events, /user (and first reads of comment lists) cost quota.
            let firstListReads = lists.filter { !$0.notModified }.count
            #expect(github.simulator.quotaUsed(token: user.token) - used <= 4 + firstListReads)
        }
    }

    @Test func nothingIsLostOrRepeatedWhileTheWorldChangesDuringSyncs() async throws {
        try await SimulatedGitHub.with({
            $0.activityInterval = .milliseconds(400)
            $0.latency = .milliseconds(15)
            // Compared with the whole truth (the busy world with re-bumps is RealGitHubBehaviourTests'): no re-bumps.
            $0.threadBumps = false
        }) { github in
            let user = github.user
            let start = Date()
            var state: JSONValue?
            var emitted: [String] = []
            var lastStart = start
            var emittedLater = 0
            for round in 0..<5 {
                lastStart = Date()
                let outcome = try await github.sync(user, state: state)
                #expect(outcome.isComplete)
                emitted += outcome.activities.map(\.id)
                if round > 0 { emittedLater += outcome.activities.count }
                state = outcome.state
                try await Task.sleep(for: .milliseconds(300))
            }
            #expect(Set(emitted).count == emitted.count, "overlapping syncs never emit an id twice")
            let must = try github.simulator.truth(
                login: user.login, from: start.addingTimeInterval(-86_400), to: lastStart.addingTimeInterval(-1))
            let may = try github.simulator.truth(login: user.login, from: start.addingTimeInterval(-86_400), to: Date())
            let missing = Set(must.map(\.id)).subtracting(emitted)
            #expect(missing.isEmpty, "lost: \(missing.sorted())")
            #expect(Set(emitted).isSubset(of: Set(may.map(\.id))))
            #expect(emittedLater > 0, "new items appeared between and during syncs")
        }
    }

    @Test func subjectThatFailedIsEmittedNextTime() async throws {
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        try await SimulatedGitHub.with({ $0.threadBumps = false }, integration: { $0.maxAttempts = 1 }) { github in
            let user = github.user
            github.simulator.injectFault(.serverError, count: 2, pathPrefix: "/repos/")
            let before = Date()
            let first = try await github.sync(user, state: nil)
            guard case .partial = first.status else {
                Issue.record("expected a partial sync, got \(first.status)")
                return
            }
            let truth = try github.simulator.truth(
                login: user.login, from: before.addingTimeInterval(-86_400), to: before)
            let firstIds = Set(first.activities.map(\.id))
            #expect(firstIds.count < truth.count, "some notification waited for its subject")
            let second = try await github.sync(user, state: first.state)
            #expect(second.isComplete)
            let all = first.activities.map(\.id) + second.activities.map(\.id)
            #expect(Set(all).count == all.count)
            #expect(Set(all) == Set(truth.map(\.id)))
        }
    }

    @Test func retryAfterIsHonoured() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            github.simulator.injectFault(.secondaryLimit(retryAfter: 2), count: 1, pathPrefix: "/notifications")
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            let listing = github.requests(of: user.login).filter { $0.path == "/notifications" }
            let limited = try #require(listing.first { $0.status == 403 })
            let retried = try #require(listing.first { $0.date > limited.date && $0.status == 200 })
            #expect(retried.date.timeIntervalSince(limited.date) >= 1.9)
        }
    }

    @Test func secondaryLimitPastTheDeadlineEndsEarlyWithProgressSaved() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            let first = try await github.sync(user, state: nil)
            github.simulator.injectFault(.secondaryLimitWithoutRetryAfter, count: 1, pathPrefix: "/notifications")
            let started = Date()
            let outcome = try await github.sync(user, state: first.state, timeout: 3)
            #expect(Date().timeIntervalSince(started) < 3.5, "deadline kept")
            guard case .partial(_, let retryAfter) = outcome.status else {
                Issue.record("expected partial, got \(outcome.status)")
                return
            }
            #expect((retryAfter ?? .distantPast) >= started.addingTimeInterval(59), "at least a minute")
            #expect(outcome.githubState.lastSyncTime == first.githubState.lastSyncTime)
        }
    }

    @Test func quotaIsNeverExceeded() async throws {
        try await SimulatedGitHub.with({
            $0.quotaPerHour = 6; $0.historyItems = 40
        }) { github in
            let user = github.user
            let outcome = try await github.sync(user, state: nil, timeout: 5)
            guard case .partial(_, let retryAfter) = outcome.status else {
                Issue.record("expected partial, got \(outcome.status)")
                return
            }
            #expect(retryAfter != nil)
            let responses = github.requests(of: user.login)
            #expect(responses.allSatisfy { $0.status != 403 && $0.status != 429 })
            #expect(github.simulator.quotaUsed(token: user.token) <= 6)
        }
    }

    @Test func deadlineIsKeptUnderLatency() async throws {
        try await SimulatedGitHub.with({
            $0.latency = .milliseconds(400); $0.historyItems = 40
        }) { github in
            let started = Date()
            let outcome = try await github.sync(github.user, state: nil, timeout: 1.5)
            // The deadline plus about one request (and slack for a loaded machine); without it this history takes
            // well over 10 s at this latency.
            #expect(Date().timeIntervalSince(started) < 4.0)
            if case .complete = outcome.status { Issue.record("expected the sync to stop early") }
        }
    }

    @Test func rejectedTokenNeedsReauthAfterExactlyOneRequest() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            try github.simulator.expireToken(login: user.login)
            let outcome = try await github.sync(user, state: nil)
            guard case .needsReauth = outcome.status else {
                Issue.record("expected needsReauth, got \(outcome.status)")
                return
            }
            #expect(github.requests(of: user.login).count == 1)
            #expect(outcome.githubState.needsReauth)
            #expect(outcome.updatedConfig == nil)
        }
    }

    @Test func refreshTokenYieldsTheNewPairAndTheSyncContinues() async throws {
        try await SimulatedGitHub.with { github in
            let old = github.user
            try github.simulator.expireToken(login: old.login)
            let outcome = try await github.sync(old, state: nil, refresh: true)
            #expect(outcome.isComplete)
            let fresh = try #require(github.simulator.user(login: old.login))
            #expect(fresh.token != old.token)
            let config = try #require(outcome.updatedConfig)
            #expect(config["access_token"]?.stringValue == fresh.token)
            #expect(config["refresh_token"]?.stringValue == fresh.refreshToken)
            #expect(config["mcp"]?["tokens"]?["access_token"]?.stringValue == fresh.token)
            #expect(!outcome.activities.isEmpty)
            #expect(!outcome.githubState.needsReauth)
        }
    }

    /// The refresh invalidated the old pair at once: the new one is stored (through the worker's hook) before any
    /// request carries it, so a sync cancelled or killed right after cannot lose it. A pair that cannot be stored
    /// is not used: the sync stops (not needs_reauth) and still hands the pair over with its outcome.
    @Test func aRefreshedPairIsStoredBeforeAnyRequestUsesIt() async throws {
        try await SimulatedGitHub.with { github in
            let old = github.user
            try github.simulator.expireToken(login: old.login)
            let saved = Mutex<[(config: JSONValue, usedBefore: Int)]>([])
            let simulator = github.simulator
            var request = SyncRequest(
                accountId: String(old.id), config: github.config(old, refresh: true), state: nil,
                deadline: Date().addingTimeInterval(30))
            request.saveRefreshedConfig = { config in
                let token = config["access_token"]?.stringValue ?? ""
                saved.withLock { $0.append((config, simulator.quotaUsed(token: token))) }
            }
            let outcome = try await github.integration.sync(request)
            #expect(outcome.isComplete)
            let fresh = try #require(github.simulator.user(login: old.login))
            let stored = saved.withLock { $0 }
            #expect(stored.count == 1)
            #expect(stored.first?.config["access_token"]?.stringValue == fresh.token)
            #expect(stored.first?.config["refresh_token"]?.stringValue == fresh.refreshToken)
            #expect(stored.first?.usedBefore == 0, "no request used the new token before it was stored")
            #expect(github.simulator.quotaUsed(token: fresh.token) > 0, "the sync went on with it")
        }
        try await SimulatedGitHub.with { github in
            let old = github.user
            try github.simulator.expireToken(login: old.login)
            var request = SyncRequest(
                accountId: String(old.id), config: github.config(old, refresh: true), state: nil,
                deadline: Date().addingTimeInterval(30))
            struct Down: Error {}
            request.saveRefreshedConfig = { _ in throw Down() }
            let outcome = try await github.integration.sync(request)
            let fresh = try #require(github.simulator.user(login: old.login))
            guard case .partial(let reason, _) = outcome.status else {
                Issue.record("expected a partial sync, got \(outcome.status)")
                return
            }
            #expect(reason.contains("could not be stored before use"), "\(reason)")
            #expect(outcome.updatedConfig?["access_token"]?.stringValue == fresh.token)
            #expect(github.simulator.quotaUsed(token: fresh.token) == 0, "an unstored pair is never used")
        }
    }

    @Test func malformedBodiesAndDroppedConnectionsAreRetried() async throws {
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        try await SimulatedGitHub.with({ $0.threadBumps = false }) { github in
            let user = github.user
            github.simulator.injectFault(.malformedJSON, count: 1, pathPrefix: "/notifications")
            github.simulator.injectFault(.drop, count: 1, pathPrefix: "/repos/")
            github.simulator.injectFault(.serverError, count: 1, pathPrefix: "/users/")
            let before = Date()
            let outcome = try await github.sync(user, state: nil)
            #expect(outcome.isComplete)
            let truth = try github.simulator.truth(
                login: user.login, from: before.addingTimeInterval(-86_400), to: before)
            #expect(Set(outcome.activities.map(\.id)) == Set(truth.map(\.id)))
        }
    }

    @Test func eventsBeyondGitHubsCapAreRecordedAsAGap() async throws {
        try await SimulatedGitHub.with(
            {
                $0.eventCap = 5; $0.historyItems = 60
            }, integration: { $0.eventHistoryLimit = 5 }
        ) {
            github in
            let outcome = try await github.sync(github.user, state: nil)
            let gaps = outcome.githubState.gaps.filter { $0.source == "events" }
            #expect(gaps.count == 1)
        }
    }

    @Test func secondNotificationOnAFetchedUnchangedSubjectDoesNotRefetchIt() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            let first = try await github.sync(user, state: nil)
            let notified = try #require(
                first.activities.first { $0.id.hasPrefix("github:notification:") && $0.repo != nil })
            let repo = try #require(notified.repo)
            let number = try #require(notified.number)
            let isPR = notified.sourceURL.contains("/pull/")
            let thread = try github.simulator.addNotification(
                for: user.login, reason: "assign", subjectType: isPR ? "PullRequest" : "Issue", repo: repo,
                number: number, at: Date().addingTimeInterval(-2))
            let mark = github.simulator.requests().count
            let second = try await github.sync(user, state: first.state)
            #expect(second.isComplete)
            #expect(second.activities.map(\.id).contains { $0.hasPrefix("github:notification:\(thread):") })
            let subjectFetches = github.requests(of: user.login, since: mark).filter {
                $0.path.hasPrefix("/repos/\(repo)/") && $0.path.hasSuffix("/\(number)")
            }
            #expect(subjectFetches.count <= 1)
            #expect(subjectFetches.allSatisfy { $0.notModified && !$0.countedAgainstQuota })
        }
    }

    @Test func subjectURLOnAnotherHostIsNeverRequested() async throws {
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        try await SimulatedGitHub.with({ $0.threadBumps = false }) { github in
            let user = github.user
            let thread = try github.simulator.addNotification(
                for: user.login, reason: "comment", subjectType: "Issue", title: "Moved elsewhere",
                commentBody: "look here", at: Date().addingTimeInterval(-30))
            try github.simulator.setSubjectURLHost(threadId: thread, host: "localhost:\(github.simulator.port)")
            let before = Date()
            let first = try await github.sync(user, state: nil)
            #expect(first.isComplete, "the refused item is skipped, not retried forever")
            #expect(!first.activities.contains { $0.id.hasPrefix("github:notification:\(thread):") })
            let truth = try github.simulator.truth(
                login: user.login, from: before.addingTimeInterval(-86_400), to: before)
            #expect(Set(first.activities.map(\.id)) == Set(truth.map(\.id)))
            _ = try await github.sync(user, state: first.state)
            #expect(!github.simulator.hostsSeen().contains { $0.lowercased().hasPrefix("localhost") })
        }
    }

    @Test func itemUpdatedWhileASyncRunsIsEmittedByTheNextOne() async throws {
        try await SimulatedGitHub.with({ $0.latency = .milliseconds(150) }) { github in
            let user = github.user
            let thread = try github.simulator.addNotification(
                for: user.login, reason: "comment", commentBody: "first", at: Date().addingTimeInterval(-120))
            let mark = github.simulator.requests().count
            async let running = github.sync(user, state: nil)
            try await eventually(
                "the first sync listed notifications", timeout: .seconds(10), interval: .milliseconds(10)
            ) {
                github.requests(of: user.login, since: mark).contains { $0.path == "/notifications" }
            }
            let touchedAt = Date()
            try github.simulator.touchThread(thread, at: touchedAt, commentBody: "second", actor: "grace-sim")
            let first = try await running
            // The next sync lists up to its own start, whole seconds excluded: start it after the touch's second.
            let touchedSecond = Date(timeIntervalSince1970: touchedAt.timeIntervalSince1970.rounded(.down))
            while Date() < touchedSecond.addingTimeInterval(1.05) { try await Task.sleep(for: .milliseconds(20)) }
            let second = try await github.sync(user, state: first.state)
            let prefix = "github:notification:\(thread):"
            let firstVersion = first.activities.filter { $0.id.hasPrefix(prefix) }
            let secondVersion = second.activities.filter { $0.id.hasPrefix(prefix) }
            #expect(firstVersion.count <= 1)  // the old version, unless the touch beat the listing
            #expect(secondVersion.count == 1)
            #expect(firstVersion.first?.id != secondVersion.first?.id)
            #expect(secondVersion.first?.text.hasPrefix("grace-sim commented on issue #") == true)
            #expect(secondVersion.first?.text.hasSuffix(": second") == true)
        }
    }

    @Test func paginationLinkToAnotherHostIsNeverFollowed() async throws {
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        try await SimulatedGitHub.with(
            {
                $0.historyItems = 40; $0.threadBumps = false
            }, integration: { $0.notificationsPerPage = 3 }
        ) { github in
            let user = github.user
            github.simulator.setPaginationLinkHost("localhost:\(github.simulator.port)")
            let before = Date()
            let outcome = try await github.sync(user, state: nil)
            // Pages are asked for by time on the configured origin, so a hostile `Link` has nothing to offer.
            #expect(outcome.isComplete)
            #expect(!github.simulator.hostsSeen().contains { $0.lowercased().hasPrefix("localhost") })
            let listing = github.requests(of: user.login).filter { $0.path == "/notifications" }
            #expect(listing.count > 1)
            let truth = try github.simulator.truth(
                login: user.login, from: before.addingTimeInterval(-86_400), to: before)
            #expect(Set(outcome.activities.map(\.id)) == Set(truth.map(\.id)))
        }
    }

    @Test func pollIntervalIsHonoured() async throws {
        try await SimulatedGitHub.with({ $0.pollInterval = 60 }) { github in
            let user = github.user
            let first = try await github.sync(user, state: nil)
            let state = first.githubState
            #expect((state.nextNotificationsPoll ?? .distantPast) > Date().addingTimeInterval(50))
            #expect((state.nextEventsPoll ?? .distantPast) > Date().addingTimeInterval(50))
            let mark = github.simulator.requests().count
            let second = try await github.sync(user, state: first.state)
            #expect(second.isComplete)
            #expect(github.requests(of: user.login, since: mark).isEmpty, "nothing polled before GitHub allows")
        }
    }

    @Test func exhaustedQuotaWaitsForTheResetOrStopsWithItsTime() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            github.simulator.injectFault(.rateLimited, count: 1, pathPrefix: "/notifications")
            let started = Date()
            let outcome = try await github.sync(user, state: nil, timeout: 6)
            // Its time plus slack for a loaded machine; waiting for the reset would take up to an hour.
            #expect(Date().timeIntervalSince(started) < 8)
            guard case .partial(_, let retryAfter) = outcome.status else {
                Issue.record("expected partial, got \(outcome.status)")
                return
            }
            #expect((retryAfter ?? .distantPast) > started.addingTimeInterval(6))
            let limited = github.requests(of: user.login).filter { $0.status == 403 }
            #expect(limited.count == 1, "no second request into an exhausted quota")
        }
    }

    @Test func resyncReemitsTheSameIds() async throws {
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        try await SimulatedGitHub.with({ $0.threadBumps = false }) { github in
            let user = github.user
            let first = try await github.sync(user, state: nil)
            let resync = try await github.sync(user, state: first.state, since: Date().addingTimeInterval(-86_400))
            #expect(resync.isComplete)
            #expect(Set(resync.activities.map(\.id)) == Set(first.activities.map(\.id)))
            #expect(Set(resync.activities.map(\.text)) == Set(first.activities.map(\.text)))
            #expect(resync.githubState.lastSyncTime == first.githubState.lastSyncTime, "a resync never moves back")
        }
    }

    @Test func setupReadsTheUser() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            let setup = try await github.integration.setup(
                oauthResponse: ["access_token": .string(user.token), "refresh_token": .string(user.refreshToken)])
            #expect(setup.accountId == String(user.id))
            #expect(setup.settings["username"]?.stringValue == user.login)
            #expect(setup.settings["schedule"]?["frequency"] == "*/5 * * * *")
            #expect(setup.config["access_token"]?.stringValue == user.token)
            #expect(setup.config["refresh_token"]?.stringValue == user.refreshToken)
            #expect(setup.config["mcp"]?["tokens"]?["access_token"]?.stringValue == user.token)
        }
    }
}
