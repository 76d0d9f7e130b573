import Foundation
import Logging
import SyncModel

/// One sync of one account: notifications, then the user's events, then the new state.
///
/// The two endpoints run one after the other so that a rejected token costs exactly one request.
struct SyncRun {
    let client: GitHubClient
    let logger: Logger
    let request: SyncRequest
    let credentials: AccountCredentials
    /// Notification pages are pinned to `before=started`; events after it wait for the next sync.
    let started: Date
    var state: GitHubState
    private(set) var activities: [Activity] = []
    private var recent: RecentIds
    private var problems: [String] = []

    private var configuration: GitHubConfiguration { client.configuration }
    private var isResync: Bool { request.since != nil }
    private var deadline: Date { request.deadline }

    init(
        client: GitHubClient, logger: Logger, request: SyncRequest, state: GitHubState,
        credentials: AccountCredentials, started: Date
    ) {
        self.client = client
        var logger = logger
        logger[metadataKey: "accountId"] = "\(request.accountId)"
        self.logger = logger
        self.request = request
        self.state = state
        self.credentials = credentials
        self.started = started
        self.recent = RecentIds(state.recentIds, limit: client.configuration.recentIdLimit)
    }

    /// Why a phase stopped the whole sync.
    private enum Stop: Error {
        case reauth(String)
        case halted(reason: String, retryAfter: Date?)

        init(_ error: GitHubError) {
            if error.isUnauthorized {
                self = .reauth(error.description)
            } else {
                self = .halted(reason: error.description, retryAfter: error.retryAfter)
            }
        }
    }

    mutating func run() async -> SyncOutcome.Status {
        var status: SyncOutcome.Status
        do throws(Stop) {
            if state.username == nil { try await learnUsername() }
            try await syncNotifications()
            try await syncEvents()
            state.needsReauth = false
            status = problems.isEmpty ? .complete : .partial(reason: problems.joined(separator: "; "), retryAfter: nil)
        } catch {
            switch error {
            case .reauth(let reason):
                state.needsReauth = true
                status = .needsReauth(reason: reason)
            case .halted(let reason, let retryAfter):
                status = .partial(reason: (problems + [reason]).joined(separator: "; "), retryAfter: retryAfter)
            }
        }
        state.recentIds = recent.ids
        if state.gaps.count > configuration.gapLimit {
            state.gaps.removeFirst(state.gaps.count - configuration.gapLimit)
        }
        return status
    }

    private mutating func learnUsername() async throws(Stop) {
        let user: GitHubAccount?
        do {
            (user, _) = try await client.getJSON(
                GitHubAccount.self, client.apiURL("/user"), credentials: credentials, deadline: deadline)
        } catch {
            throw Stop(error)
        }
        guard let user else {
            throw Stop.halted(reason: "GET /user answered 304 without a request for it", retryAfter: nil)
        }
        state.username = user.login
    }

    // MARK: - Notifications

    private mutating func syncNotifications() async throws(Stop) {
        let now = Date()
        if !isResync, let next = state.nextNotificationsPoll, next > now {
            logger.debug("notifications skipped until X-Poll-Interval passes", metadata: ["next": "\(next)"])
            return
        }
        let previous = state.lastSyncTime
        let base = request.since ?? previous ?? started.addingTimeInterval(-seconds(configuration.firstSyncWindow))
        let since = isResync ? base : base.addingTimeInterval(-seconds(configuration.overlap))
        var url = client.apiURL(
            "/notifications?all=true&since=\(QueryDate.format(since))&before=\(QueryDate.format(started))"
                + "&per_page=\(configuration.notificationsPerPage)")
        var conditional: [(String, String)] = []
        if !isResync, let validator = state.notificationsLastModified {
            conditional = [("If-Modified-Since", validator)]
        }

        var threads: [NotificationThread] = []
        var listingComplete = false
        var lastModified: String?
        var pages = 0
        var halt: Stop?
        listing: while true {
            let response: GitHubResponse
            let page: [NotificationThread]?
            do {
                (page, response) = try await client.getJSON(
                    [NotificationThread].self, url, credentials: credentials,
                    conditional: pages == 0 ? conditional : [],
                    deadline: deadline)
            } catch {
                if error.stopsSync {
                    halt = Stop(error)
                } else {
                    problems.append("notifications: \(error.description)")
                }
                break listing
            }
            if pages == 0 {
                if let interval = response.pollInterval {
                    state.nextNotificationsPoll = Date().addingTimeInterval(Double(interval))
                }
                lastModified = response.lastModified
            }
            pages += 1
            guard let page else {
                // 304: nothing changed since the last complete read. Free.
                return
            }
            threads.append(contentsOf: page)
            guard let next = response.nextLink else {
                listingComplete = true
                break listing
            }
            if pages >= configuration.maxPages {
                // The window holds more than we read; record what was not covered instead of looping forever.
                if let oldest = page.compactMap({ WireFormat.parseDate($0.updated_at) }).min() {
                    state.gaps.append(.init(from: since, to: oldest, source: "notifications"))
                }
                listingComplete = true
                break listing
            }
            url = next
        }

        // Items: kept reasons and subject types become activities; the rest only move the watermark.
        var processedMax: Date?
        var failedMin: Date?
        var pending: [(thread: NotificationThread, id: String, updatedAt: Date)] = []
        var listedIds = Set<String>()  // a thread listed twice (pages shifting) is one activity
        for thread in threads {
            guard let updatedAt = WireFormat.parseDate(thread.updated_at) else {
                logger.warning(
                    "notification with an unreadable updated_at skipped", metadata: ["thread": "\(thread.id)"])
                continue
            }
            let id = "github:notification:\(thread.id):\(thread.updated_at)"
            guard ActivityText.keptReasons.contains(thread.reason),
                ActivityText.isPullRequest(subjectType: thread.subject.type) != nil,
                isResync || !recent.contains(id), listedIds.insert(id).inserted
            else {
                processedMax = later(processedMax, updatedAt)
                continue
            }
            pending.append((thread, id, updatedAt))
        }

        // One fetch per distinct subject (and comment) URL, in parallel within bounds.
        var jobs: [FetchJob] = []
        var seen = Set<String>()
        for item in pending {
            if let subjectURL = item.thread.subject.url, seen.insert(subjectURL).inserted {
                jobs.append(FetchJob(url: subjectURL, isComment: false))
            }
            if let commentURL = commentURL(for: item.thread), seen.insert(commentURL).inserted {
                jobs.append(FetchJob(url: commentURL, isComment: true))
            }
        }
        let fetcher = SubjectFetcher(client: client, credentials: credentials, deadline: deadline, logger: logger)
        let (results, fetchStop) = await fetcher.fetch(jobs, parallelism: configuration.subjectParallelism)
        if let fetchStop, halt == nil { halt = Stop(fetchStop) }

        var failures = 0
        for item in pending {
            switch activity(for: item.thread, id: item.id, updatedAt: item.updatedAt, results: results) {
            case .emit(let activity):
                activities.append(activity)
                recent.insert(activity.id)
                processedMax = later(processedMax, item.updatedAt)
            case .skip:
                processedMax = later(processedMax, item.updatedAt)
            case .retry:
                failures += 1
                failedMin = earlier(failedMin, item.updatedAt)
            }
        }
        if failures > 0, halt == nil {
            problems.append("\(failures) notification subject(s) failed; retried next sync")
        }

        // The watermark: the newest item processed, but never past one that failed, nor past unread pages.
        var watermark = base
        if listingComplete {
            var candidate = processedMax ?? base
            if let failedMin { candidate = min(candidate, failedMin) }
            watermark = max(base, candidate)
        }
        if let previous { watermark = max(previous, watermark) }
        state.lastSyncTime = watermark

        // The validator is kept only when everything up to `started` was read: otherwise a 304 next time would
        // hide what is still missing (a failed subject, or a thread touched during this sync).
        // HTTP dates have whole seconds and `before` excludes its own second, so a Last-Modified in that second
        // may stand for a thread this sync did not list: only an earlier one is safe to send back.
        let beforeSecond = Date(timeIntervalSince1970: started.timeIntervalSince1970.rounded(.down))
        if listingComplete, failures == 0, halt == nil, let lastModified,
            let modified = HTTPDate.parse(lastModified), modified < beforeSecond
        {
            state.notificationsLastModified = lastModified
        } else {
            state.notificationsLastModified = nil
        }
        if let halt { throw halt }
    }

    /// The comment URL whose author and body a notification should show, when it names a comment.
    private func commentURL(for thread: NotificationThread) -> String? {
        guard ["mention", "comment", "state_change"].contains(thread.reason),
            let url = thread.subject.latest_comment_url, url != thread.subject.url, namesComment(url)
        else { return nil }
        return url
    }

    private func namesComment(_ url: String) -> Bool {
        let path = URLComponents(string: url)?.path ?? url
        let parts = path.split(separator: "/")
        guard parts.count >= 2 else { return false }
        return parts[parts.count - 2] == "comments" && Int(parts[parts.count - 1]) != nil
    }

    private enum ItemResult {
        case emit(Activity)
        case skip
        case retry
    }

    private func activity(
        for thread: NotificationThread, id: String, updatedAt: Date, results: [String: FetchResult]
    ) -> ItemResult {
        guard let isPR = ActivityText.isPullRequest(subjectType: thread.subject.type) else { return .skip }
        guard let subjectURL = thread.subject.url else {
            logger.info("notification without a subject URL skipped", metadata: ["thread": "\(thread.id)"])
            return .skip
        }
        let subject: IssueOrPull
        switch results[subjectURL] ?? .notAttempted {
        case .subject(let value): subject = value
        case .comment, .gone: return .skip
        case .failed, .notAttempted: return .retry
        }
        var actor = subject.user?.login ?? ""
        var body = subject.body ?? ""
        if let commentURL = commentURL(for: thread) {
            switch results[commentURL] ?? .notAttempted {
            case .comment(let comment):
                actor = comment.user?.login ?? actor
                body = comment.body ?? ""
            case .subject: break
            case .gone(let refused):
                if refused { return .skip }  // a comment URL outside the API origin: the item is skipped
            case .failed, .notAttempted: return .retry
            }
        }
        let repo = thread.repository.full_name
        let facts = ActivityText.NotificationFacts(
            reason: thread.reason, isPullRequest: isPR, username: state.username ?? "", repo: repo,
            number: subject.number, title: subject.title, state: subject.state, actor: actor, body: body)
        guard let text = ActivityText.notification(facts) else { return .skip }
        let mentionsActor = ["mention", "comment", "state_change"].contains(thread.reason)
        return .emit(
            Activity(
                text: text, sourceURL: webURL(subject, repository: thread.repository, isPR: isPR), id: id,
                occurredAt: updatedAt, kind: thread.reason, repo: repo, number: subject.number,
                actor: mentionsActor ? actor : subject.user?.login, accountId: request.accountId))
    }

    /// The subject's web page; never an API URL.
    private func webURL(_ subject: IssueOrPull, repository: GitHubRepositoryRef, isPR: Bool) -> String {
        if let html = subject.html_url { return html }
        if isPR, let html = subject.pull_request?.html_url { return html }
        guard let repoPage = repository.html_url else { return "" }
        return "\(repoPage)/\(isPR ? "pull" : "issues")/\(subject.number)"
    }

    // MARK: - Events

    private mutating func syncEvents() async throws(Stop) {
        guard let username = state.username else { return }
        let now = Date()
        if !isResync, let next = state.nextEventsPoll, next > now {
            logger.debug("events skipped until X-Poll-Interval passes", metadata: ["next": "\(next)"])
            return
        }
        let previous = state.lastUserEventTime
        let base = request.since ?? previous ?? started.addingTimeInterval(-seconds(configuration.firstSyncWindow))
        let cutoff = isResync ? base : base.addingTimeInterval(-seconds(configuration.overlap))
        let login = username.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? username
        var url = client.apiURL("/users/\(login)/events?per_page=\(configuration.eventsPerPage)")
        var conditional: [(String, String)] = []
        if !isResync, let etag = state.eventsETag { conditional = [("If-None-Match", etag)] }

        var pages = 0
        var seenCount = 0
        var oldestSeen: Date?
        var reachedWatermark = false
        var listingComplete = false
        var deferredNewer = false
        var processedMax: Date?
        var etag: String?
        var halt: Stop?
        listing: while true {
            let response: GitHubResponse
            let page: [GitHubEvent]?
            do {
                (page, response) = try await client.getJSON(
                    [GitHubEvent].self, url, credentials: credentials, conditional: pages == 0 ? conditional : [],
                    deadline: deadline)
            } catch {
                if error.stopsSync { halt = Stop(error) } else { problems.append("events: \(error.description)") }
                break listing
            }
            if pages == 0 {
                if let interval = response.pollInterval {
                    state.nextEventsPoll = Date().addingTimeInterval(Double(interval))
                }
                etag = response.etag
            }
            pages += 1
            guard let page else { return }  // 304: no new events. Free.
            for event in page {
                seenCount += 1
                guard let created = event.created_at.flatMap(WireFormat.parseDate) else { continue }
                oldestSeen = earlier(oldestSeen, created)
                if created < cutoff {
                    reachedWatermark = true
                    break
                }
                if created >= started {
                    deferredNewer = true  // read by the next sync, like notifications pinned to `before`
                    continue
                }
                processedMax = later(processedMax, created)
                if let activity = activity(for: event, username: username, created: created),
                    isResync || !recent.contains(activity.id)
                {
                    activities.append(activity)
                    recent.insert(activity.id)
                }
            }
            if reachedWatermark {
                listingComplete = true
                break listing
            }
            guard let next = response.nextLink else {
                listingComplete = true
                break listing
            }
            if pages >= configuration.maxPages {
                listingComplete = true
                break listing
            }
            url = next
        }

        // GitHub keeps 300 events / 90 days: if we read all it has and never reached the watermark, the events
        // between the watermark and the oldest one returned are gone. Say so instead of pretending coverage.
        if listingComplete, !reachedWatermark, let oldestSeen, oldestSeen > base,
            seenCount >= configuration.eventHistoryLimit || pages >= configuration.maxPages
        {
            state.gaps.append(.init(from: base, to: oldestSeen, source: "events"))
        } else if listingComplete, !reachedWatermark, base < started.addingTimeInterval(-90 * 86_400) {
            state.gaps.append(.init(from: base, to: started.addingTimeInterval(-90 * 86_400), source: "events"))
        }
        var watermark = base
        if listingComplete { watermark = max(base, processedMax ?? base) }
        if let previous { watermark = max(previous, watermark) }
        state.lastUserEventTime = watermark
        state.eventsETag = listingComplete && halt == nil && !deferredNewer ? etag : nil
        if let halt { throw halt }
    }

    private func activity(for event: GitHubEvent, username: String, created: Date) -> Activity? {
        guard let kind = ActivityText.eventKind(event), let payload = event.payload else { return nil }
        let target: IssueOrPull?
        switch kind {
        case "pr_opened": target = payload.pull_request
        case "issue_opened": target = payload.issue
        case "pr_comment": target = payload.pull_request ?? payload.issue
        default: target = payload.issue
        }
        guard let target else { return nil }
        let number = kind == "pr_opened" ? (payload.number ?? target.number) : target.number
        // The issue's or pull request's page, also for comments: the activity is about that conversation.
        let sourceURL = target.html_url ?? target.pull_request?.html_url ?? payload.comment?.html_url ?? ""
        return Activity(
            text: ActivityText.event(kind: kind, username: username, number: number, title: target.title),
            sourceURL: sourceURL, id: "github:event:\(event.id)", occurredAt: created, kind: kind,
            repo: event.repo.name, number: number, actor: event.actor?.login ?? username,
            accountId: request.accountId)
    }
}

private func later(_ a: Date?, _ b: Date) -> Date { a.map { max($0, b) } ?? b }
private func earlier(_ a: Date?, _ b: Date) -> Date { a.map { min($0, b) } ?? b }

/// Recently emitted ids, bounded, oldest dropped first.
struct RecentIds {
    private(set) var ids: [String]
    private var set: Set<String>
    let limit: Int

    init(_ ids: [String], limit: Int) {
        self.limit = max(1, limit)
        self.ids = Array(ids.suffix(self.limit))
        self.set = Set(self.ids)
    }

    func contains(_ id: String) -> Bool { set.contains(id) }

    mutating func insert(_ id: String) {
        guard set.insert(id).inserted else { return }
        ids.append(id)
        if ids.count > limit {
            let overflow = ids.count - limit
            for old in ids.prefix(overflow) { set.remove(old) }
            ids.removeFirst(overflow)
        }
    }
}
