import Foundation
import IntegrationCatalog
import Logging
import Metrics
import SyncModel

/// Events skipped because they do not decode, or are of a type GitHub did not document when this was written.
private let undecodableEvents = Counter(label: "github_events_undecodable_total")
private let unknownEvents = Counter(label: "github_events_unknown_type_total")

/// The events phase: the user's events read down to the lag horizon, new ones told apart by id, their pull
/// requests loaded where the trimmed payloads leave out title or page.
extension SyncRun {
    /// Where this sync's event read goes, fixed before its first request.
    struct EventWindow {
        /// The watermark the last sync left.
        var previous: Date?
        var base: Date
        /// Event ids already emitted.
        var known: Set<String>
        /// How far down the read goes.
        var horizon: Date
        var conditional: [(String, String)]
    }

    /// What the event pager read.
    struct EventListing {
        var pages = 0
        var seenCount = 0
        var oldestSeen: Date?
        var reachedHorizon = false
        var complete = false
        var processedMax: Date?
        /// Kept events above the horizon, new or not.
        var listed: [(id: String, created: Date)] = []
        var seenIds: Set<String>
        var etag: String?
        /// Kept events not emitted before.
        var fresh: [(event: GitHubEvent, kind: String, created: Date)] = []
        var undecodable = 0
        var unknownTypes: [String: Int] = [:]

        /// Takes a page's events down to `horizon`; true once an event below it is reached.
        mutating func add(_ page: EventPage, horizon: Date, isResync: Bool) -> Bool {
            undecodable += page.undecodable
            seenCount += page.undecodable
            for event in page.events {
                seenCount += 1
                if let type = event.type, !GitHubEvent.knownTypes.contains(type) { unknownTypes[type, default: 0] += 1 }
                guard let created = event.created_at.flatMap(WireFormat.parseDate) else { continue }
                oldestSeen = earlier(oldestSeen, created)
                if created < horizon { return true }
                processedMax = later(processedMax, created)
                guard let kind = ActivityText.eventKind(event) else { continue }
                listed.append((event.id, created))
                guard isResync || !seenIds.contains(event.id) else { continue }
                seenIds.insert(event.id)
                fresh.append((event, kind, created))
            }
            return false
        }
    }

    mutating func syncEvents() async throws(Stop) {
        guard let username = state.username else { return }
        let now = Date()
        if !isResync, let next = state.nextEventsPoll, next > now {
            logger.debug("events skipped until X-Poll-Interval passes", metadata: ["next": "\(next)"])
            return
        }
        let window = eventWindow()
        var halt: Stop?
        guard var listing = await listEvents(window, username: username, halt: &halt) else { return }
        reportSkippedEvents(listing)
        let waiting = await emitEvents(listing.fresh, username: username, halt: &halt)
        if !waiting.isEmpty {
            listing.seenIds.subtract(waiting)
            listing.listed.removeAll { waiting.contains($0.id) }
            problems.append("events: \(waiting.count) pull request(s) could not be read; retried next sync")
        }
        recordLostEvents(window, listing: listing)
        advanceEventWatermark(window, listing: listing, settled: halt == nil && waiting.isEmpty)
        if let halt { throw halt }
    }

    /// What is new is decided by event id, not by clock: GitHub shows an event 30 s to 6 h after it happened, so a
    /// late one sits below newer events already processed. Each read goes down to the lag horizon under the
    /// watermark and emits every kept event whose id it has not seen.
    private func eventWindow() -> EventWindow {
        let previous = state.lastUserEventTime
        let base = request.since ?? previous ?? started.addingTimeInterval(-seconds(configuration.firstSyncWindow))
        let known: Set<String>
        let horizon: Date
        if isResync || previous == nil {
            known = state.eventIds.map(Set.init) ?? []
            horizon = base
        } else if let ids = state.eventIds {
            known = Set(ids)
            horizon = base.addingTimeInterval(-seconds(configuration.eventLagHorizon))
        } else {
            // A state from before ids were compared: its recent ids and the overlap, one last time.
            known = Set(
                state.recentIds.filter { $0.hasPrefix(Self.eventIdPrefix) }.map {
                    String($0.dropFirst(Self.eventIdPrefix.count))
                })
            horizon = base.addingTimeInterval(-seconds(configuration.overlap))
        }
        var conditional: [(String, String)] = []
        if !isResync, let etag = state.eventsETag { conditional = [("If-None-Match", etag)] }
        return EventWindow(previous: previous, base: base, known: known, horizon: horizon, conditional: conditional)
    }

    /// Reads the user's events down to the horizon. nil when GitHub answers 304: the first page is unchanged, and it
    /// covered the horizon. Free.
    private mutating func listEvents(
        _ window: EventWindow, username: String, halt: inout Stop?
    ) async -> EventListing? {
        let login = username.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? username
        var url = client.apiURL("/users/\(login)/events?per_page=\(configuration.eventsPerPage)")
        var listing = EventListing(seenIds: window.known)
        while true {
            let response: GitHubResponse
            let decoded: EventPage?
            do {
                (decoded, response) = try await client.getJSON(
                    EventPage.self, url, credentials: credentials,
                    conditional: listing.pages == 0 ? window.conditional : [], deadline: deadline)
            } catch {
                if error.httpStatus == 404 {
                    // The login was renamed (or the user deleted): learn it again from /user on the next sync
                    // instead of asking for the old name's events forever.
                    state.username = nil
                    state.eventsETag = nil
                }
                if error.stopsSync { halt = Stop(error) } else { problems.append("events: \(error.description)") }
                return listing
            }
            if listing.pages == 0 {
                state.nextEventsPoll = Self.nextPoll(after: response)
                listing.etag = response.etag
            }
            listing.pages += 1
            guard let decoded else { return nil }
            if listing.add(decoded, horizon: window.horizon, isResync: isResync) {
                listing.reachedHorizon = true
                listing.complete = true
                return listing
            }
            guard let next = response.nextLink, listing.pages < configuration.maxPages else {
                listing.complete = true
                return listing
            }
            url = next
        }
    }

    private func reportSkippedEvents(_ listing: EventListing) {
        guard listing.undecodable > 0 || !listing.unknownTypes.isEmpty else { return }
        undecodableEvents.increment(by: listing.undecodable)
        unknownEvents.increment(by: listing.unknownTypes.values.reduce(0, +))
        logger.info(
            "events skipped: not decodable, or of a type this version does not know",
            metadata: [
                "undecodable": "\(listing.undecodable)",
                "unknownTypes": "\(listing.unknownTypes.sorted { $0.key < $1.key })",
            ])
    }

    /// Emits the new events. Returns the ids of those that wait for the next sync because the pull request they
    /// need could not be read.
    ///
    /// The pull requests whose title or page the trimmed payloads leave out: one request per pull request, through
    /// the subject cache (an unchanged one answers 304, free), none for one this sync already loaded.
    private mutating func emitEvents(
        _ fresh: [(event: GitHubEvent, kind: String, created: Date)], username: String, halt: inout Stop?
    ) async -> Set<String> {
        let targets = fresh.map { target(of: $0.event, kind: $0.kind) }
        var jobs: [FetchJob] = []
        var queued = Set<String>()
        for case let url? in targets.map({ $0?.apiURL }) where fetched[url] == nil && queued.insert(url).inserted {
            jobs.append(FetchJob(url: url, isComment: false))
        }
        if !jobs.isEmpty, halt == nil {
            let fetcher = SubjectFetcher(client: client, credentials: credentials, deadline: deadline, logger: logger)
            let (results, stop) = await fetcher.fetch(jobs, parallelism: configuration.subjectParallelism)
            if let stop { halt = Stop(stop) }
            fetched.merge(results) { _, new in new }
        }
        var waiting = Set<String>()
        for (item, target) in zip(fresh, targets) {
            guard var target else { continue }
            if let apiURL = target.apiURL {
                switch fetched[apiURL] ?? .notAttempted {
                case .subject(let pull):
                    target.title = target.title ?? pull.title
                    target.webURL = target.webURL ?? pull.html_url ?? pull.pull_request?.html_url
                case .gone, .unavailable, .comment, .comments:
                    break  // gone for good (or not a pull request): what the event itself says
                case .failed, .notAttempted:
                    // Read again by the next sync, which goes down to the lag horizon below the newest event.
                    waiting.insert(item.event.id)
                    continue
                }
            }
            activities.append(
                activity(for: item.event, kind: item.kind, target: target, username: username, created: item.created))
        }
        return waiting
    }

    /// GitHub keeps 300 events and 30 days of them: if we read all it has and never reached the watermark, the
    /// events between the watermark and what is still kept are gone. Say so instead of pretending coverage.
    private mutating func recordLostEvents(_ window: EventWindow, listing: EventListing) {
        guard listing.complete, !listing.reachedHorizon else { return }
        let retained = started.addingTimeInterval(-seconds(configuration.eventHistoryAge))
        var lostUntil: Date?
        if let oldestSeen = listing.oldestSeen, oldestSeen > window.base,
            listing.seenCount >= configuration.eventHistoryLimit || listing.pages >= configuration.maxPages
        {
            lostUntil = oldestSeen
        }
        if window.base < retained { lostUntil = max(lostUntil ?? retained, retained) }
        if let lostUntil { state.gaps.append(.init(from: window.base, to: lostUntil, source: "events")) }
    }

    /// What an event's activity says about its issue or pull request.
    private struct EventTarget {
        var number: Int
        var isPullRequest: Bool
        var title: String?
        var webURL: String?
        /// `pull_request.url`, when the payload lacks the title or the page (GitHub's trimmed payloads).
        var apiURL: String?
    }

    private func target(of event: GitHubEvent, kind: String) -> EventTarget? {
        guard let payload = event.payload else { return nil }
        func issueTarget(_ issue: IssueOrPull) -> EventTarget {
            EventTarget(
                number: issue.number, isPullRequest: issue.pull_request != nil, title: issue.title,
                webURL: issue.html_url ?? issue.pull_request?.html_url)
        }
        func pullTarget(_ pull: GitHubEvent.PullRequestRef) -> EventTarget? {
            let fromURL = pull.url.flatMap { URLComponents(string: $0)?.path.split(separator: "/").last }
                .flatMap { Int($0) }
            guard let number = (kind == "pr_opened" ? payload.number : nil) ?? pull.number ?? fromURL else {
                return nil
            }
            let complete = pull.title != nil && pull.html_url != nil
            return EventTarget(
                number: number, isPullRequest: true, title: pull.title, webURL: pull.html_url,
                apiURL: complete ? nil : pull.url)
        }
        switch kind {
        case "pr_opened", "pr_review": return payload.pull_request.flatMap(pullTarget)
        case "pr_comment": return payload.pull_request.flatMap(pullTarget) ?? payload.issue.map(issueTarget)
        default: return payload.issue.map(issueTarget)
        }
    }

    private func activity(
        for event: GitHubEvent, kind: String, target: EventTarget, username: String, created: Date
    ) -> Activity {
        let payload = event.payload
        // The issue's or pull request's page, also for comments: the activity is about that conversation. The
        // comment's own permalink goes beside it. Without a page from GitHub, it is built from repository and number.
        let sourceURL =
            target.webURL.flatMap(webURLOrNil)
            ?? "\(configuration.effectiveWebBaseURL)/\(event.repo.name)/\(target.isPullRequest ? "pull" : "issues")/\(target.number)"
        let commentURL =
            kind == "pr_review"
            ? payload?.review?.html_url.flatMap(webURLOrNil)
            : kind.hasSuffix("_comment") ? payload?.comment?.html_url.flatMap(webURLOrNil) : nil
        return Activity(
            text: ActivityText.event(kind: kind, username: username, number: target.number, title: target.title ?? ""),
            sourceURL: sourceURL, id: "\(Self.eventIdPrefix)\(event.id)", occurredAt: created, kind: kind,
            repo: event.repo.name, number: target.number, actor: event.actor?.login ?? username,
            accountId: request.accountId, commentURL: commentURL)
    }
}
