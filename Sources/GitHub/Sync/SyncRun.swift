import Foundation
import IntegrationCatalog
import Logging
import Metrics
import SyncModel

/// Events skipped because they do not decode, or are of a type GitHub did not document when this was written.
private let undecodableEvents = Counter(label: "github_events_undecodable_total")
private let unknownEvents = Counter(label: "github_events_unknown_type_total")

/// One sync of one account: notifications, then the user's events, then the new state.
///
/// The two endpoints run one after the other so that a rejected token costs exactly one request.
struct SyncRun {
    let client: GitHubClient
    let logger: Logger
    let request: SyncRequest
    let credentials: AccountCredentials
    /// Notification listings are pinned to `before=started`; threads updated after it wait for the next sync.
    let started: Date
    var state: GitHubState
    private(set) var activities: [Activity] = []
    private var recent: RecentIds
    private var problems: [String] = []
    /// Subjects this sync already loaded, by URL: a pull request a notification needed serves its events too.
    private var fetched: [String: FetchResult] = [:]

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
        // Stored as `{thread}:{updated_at}`; states written before that hold whole ids (and event ids, which
        // `eventIds` replaces).
        let notificationPrefix = Self.notificationIdPrefix
        let keys = state.recentIds.compactMap { id -> String? in
            if id.hasPrefix(notificationPrefix) { return String(id.dropFirst(notificationPrefix.count)) }
            return id.hasPrefix("github:") ? nil : id
        }
        self.recent = RecentIds(keys, limit: client.configuration.recentIdLimit)
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
        state.recentIds = prunedRecentIds()
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

    /// Where this sync's notification listing reads, fixed before its first request.
    private struct NotificationWindow {
        /// The watermark the last sync left.
        var previous: Date?
        /// Where the window starts, before the overlap.
        var base: Date
        /// The listing's `since`.
        var since: Date
        /// `If-Modified-Since` for the first page.
        var conditional: [(String, String)]
        /// `started` in whole seconds: the listing's exclusive `before`.
        var beforeSecond: Date
        /// The last complete listing's `before`.
        var listedBefore: Date?
    }

    /// What the pager listed: each version of a thread once.
    private struct NotificationListing {
        var threads: [NotificationThread] = []
        /// `{thread}:{updated_at}` of every listed version.
        var listedIds = Set<String>()
        /// Every page of the window was read (or the page limit recorded a gap).
        var complete = false
        var lastModified: String?

        /// Adds a page's versions not listed yet; returns the oldest `updated_at` on the page.
        mutating func add(_ page: [NotificationThread]) -> Date? {
            var oldest: Date?
            for thread in page {
                if let updatedAt = WireFormat.parseDate(thread.updated_at) { oldest = earlier(oldest, updatedAt) }
                if listedIds.insert("\(thread.id):\(thread.updated_at)").inserted { threads.append(thread) }
            }
            return oldest
        }
    }

    /// What the phases after the listing carry to the watermark and the status.
    private struct NotificationPass {
        /// The newest version settled (emitted, skipped or given up).
        var processedMax: Date?
        /// The oldest version kept for the next sync.
        var failedMin: Date?
        var halt: Stop?
        var unavailable = 0
        var ssoRequirements = Set<String>()
    }

    /// The subjects, comment lists and discussions this sync loaded for the pending versions.
    private struct SubjectLoad {
        var results: [String: FetchResult]
        var plans: [String: CommentListPlan]
        var discussions: [String: DiscussionLookup]
    }

    private mutating func syncNotifications() async throws(Stop) {
        let now = Date()
        guard notificationsDue(now: now) else { return }
        let window = notificationWindow()
        var pass = NotificationPass()
        guard let listing = await listNotifications(window, now: now, halt: &pass.halt) else { return }
        let pending = pendingNotifications(listing.threads, pass: &pass)
        let subjects = await loadSubjects(pending, window: window, halt: &pass.halt)
        var ledger = StuckSubjectLedger(
            stored: state.stuck, giveUpAfterSyncs: configuration.stuckSubjectSyncs,
            giveUpAfterAge: seconds(configuration.stuckSubjectAge), now: now)
        settleThreads(pending, subjects: subjects, listedIds: listing.listedIds, ledger: &ledger, pass: &pass)
        reportSubjectProblems(failedThreads: ledger.failedThreads, pass: pass)
        // A thread listed again, but no longer as something to fetch (its new version is not kept, or was emitted):
        // what it left behind is emitted now, as GitHub will not list it again.
        let settled = ledger.finish(
            listingComplete: listing.complete, listedThreads: Set(listing.threads.map(\.id)),
            listedIds: listing.listedIds)
        for (threadId, version) in settled { emitSuperseded(version, thread: threadId) }
        state.stuck = ledger.records
        advanceNotificationWatermark(window, listing: listing, pass: pass, failedThreads: ledger.failedThreads)
        if let halt = pass.halt { throw halt }
    }

    /// Whether the listing is read in this sync: not while a token GitHub refused waits to be asked again, nor
    /// before `X-Poll-Interval` passes. A resync always reads.
    private mutating func notificationsDue(now: Date) -> Bool {
        guard !isResync else { return true }
        if let refused = state.notificationsRefused,
            now < refused.addingTimeInterval(seconds(configuration.notificationsRefusalRetry))
        {
            let retry = refused.addingTimeInterval(seconds(configuration.notificationsRefusalRetry))
            problems.append(
                Self.unsupportedTokenReason(
                    "refused at \(WireFormat.formatDate(refused)); asked again after \(WireFormat.formatDate(retry))"))
            return false
        }
        if let next = state.nextNotificationsPoll, next > now {
            logger.debug("notifications skipped until X-Poll-Interval passes", metadata: ["next": "\(next)"])
            return false
        }
        return true
    }

    private func notificationWindow() -> NotificationWindow {
        let previous = state.lastSyncTime
        let base = request.since ?? previous ?? started.addingTimeInterval(-seconds(configuration.firstSyncWindow))
        var conditional: [(String, String)] = []
        if !isResync, let validator = state.notificationsLastModified {
            conditional = [("If-Modified-Since", validator)]
        }
        return NotificationWindow(
            previous: previous, base: base,
            since: isResync ? base : base.addingTimeInterval(-seconds(configuration.overlap)),
            conditional: conditional,
            beforeSecond: Date(timeIntervalSince1970: started.timeIntervalSince1970.rounded(.down)),
            listedBefore: state.lastListingBefore)
    }

    /// Reads the window's pages. nil when GitHub answers 304: nothing changed since the last complete read.
    ///
    /// Paged by time, not by page number: each request asks for threads updated before the oldest one listed so
    /// far. GitHub re-bumps a thread on new activity (same id, newer `updated_at`, so it leaves this `before`-pinned
    /// window); with page numbers every later thread would move up one place and the one at the page boundary would
    /// never be listed. Whole seconds and an exclusive `before` mean the next window ends one second after the
    /// oldest seen, so threads sharing that second are listed again and dropped as repeats.
    private mutating func listNotifications(
        _ window: NotificationWindow, now: Date, halt: inout Stop?
    ) async -> NotificationListing? {
        var listing = NotificationListing()
        var before = started
        var fallbackURL: String?
        var pages = 0
        while true {
            let url =
                fallbackURL
                ?? client.apiURL(
                    "/notifications?all=true&since=\(QueryDate.format(window.since))&before=\(QueryDate.format(before))"
                        + "&per_page=\(configuration.notificationsPerPage)")
            let response: GitHubResponse
            let page: [NotificationThread]?
            do {
                (page, response) = try await client.getJSON(
                    [NotificationThread].self, url, credentials: credentials,
                    conditional: pages == 0 ? window.conditional : [],
                    deadline: deadline)
            } catch {
                halt = notificationsFailed(error, firstPage: pages == 0, now: now)
                return listing
            }
            if pages == 0 {
                state.nextNotificationsPoll = Self.nextPoll(after: response)
                listing.lastModified = response.lastModified
                state.notificationsRefused = nil
            }
            pages += 1
            guard let page else {
                // 304: nothing changed since the last complete read. Free.
                state.lastListingBefore = window.beforeSecond
                return nil
            }
            guard let oldest = listing.add(page), response.nextLink != nil else {
                listing.complete = true
                return listing
            }
            if pages >= configuration.maxPages {
                // The window holds more than we read; record what was not covered instead of looping forever.
                state.gaps.append(.init(from: window.since, to: oldest, source: "notifications"))
                listing.complete = true
                return listing
            }
            let nextBefore = Date(timeIntervalSince1970: oldest.timeIntervalSince1970.rounded(.down) + 1)
            if nextBefore.timeIntervalSince1970 < before.timeIntervalSince1970.rounded(.down) {
                before = nextBefore
                fallbackURL = nil
            } else {
                // A whole page within one second: no earlier `before` exists, so page through that second by number
                // (only here can a re-bump still shift a thread past a page boundary).
                fallbackURL = response.nextLink
            }
        }
    }

    /// A listing request that failed: the stop when it ends the sync; otherwise the problem is recorded and the
    /// events are still read.
    private mutating func notificationsFailed(_ error: GitHubError, firstPage: Bool, now: Date) -> Stop? {
        if error.stopsSync { return Stop(error) }
        if error.httpStatus == 403, firstPage {
            // GitHub App user and installation tokens and fine-grained PATs may not read notifications at all; say
            // that plainly (it will not pass by itself), go on with the events, and do not ask again for a while.
            problems.append(Self.unsupportedTokenReason(error.serverMessage ?? "HTTP 403"))
            state.notificationsRefused = now
        } else {
            problems.append("notifications: \(error.description)")
        }
        return nil
    }

    /// The listed versions that become activities: kept reasons and subject types, not emitted before. The rest
    /// only move the watermark.
    private func pendingNotifications(
        _ threads: [NotificationThread], pass: inout NotificationPass
    ) -> [PendingNotification] {
        var pending: [PendingNotification] = []
        for thread in threads {
            guard let updatedAt = WireFormat.parseDate(thread.updated_at) else {
                logger.warning(
                    "notification with an unreadable updated_at skipped", metadata: ["thread": "\(thread.id)"])
                continue
            }
            let id = Self.notificationId(thread: thread.id, updatedAt: thread.updated_at)
            let isConversation =
                ActivityText.isPullRequest(subjectType: thread.subject.type) != nil
                || ["Discussion", "Release", "Commit"].contains(thread.subject.type)
            guard ActivityText.keptReasons.contains(thread.reason), isConversation,
                isResync || !recent.contains(listingKey(id))
            else {
                pass.processedMax = later(pass.processedMax, updatedAt)
                continue
            }
            pending.append(PendingNotification(thread: thread, id: id, updatedAt: updatedAt))
        }
        return pending
    }

    /// Loads what the pending versions are told from: one fetch per distinct subject (and comment) URL, in parallel
    /// within bounds, then the comment lists some threads need, then the discussions.
    private mutating func loadSubjects(
        _ pending: [PendingNotification], window: NotificationWindow, halt: inout Stop?
    ) async -> SubjectLoad {
        let fetcher = SubjectFetcher(client: client, credentials: credentials, deadline: deadline, logger: logger)
        let (fetchedNow, fetchStop) = await fetcher.fetch(
            subjectJobs(pending), parallelism: configuration.subjectParallelism)
        var results = fetchedNow
        if let fetchStop, halt == nil { halt = Stop(fetchStop) }
        var plans: [String: CommentListPlan] = [:]
        var listJobs: [FetchJob] = []
        if halt == nil { (plans, listJobs) = commentListPlans(pending, window: window, results: results) }
        if !listJobs.isEmpty {
            let (lists, listStop) = await fetcher.fetch(listJobs, parallelism: configuration.subjectParallelism)
            if let listStop, halt == nil { halt = Stop(listStop) }
            results.merge(lists) { _, new in new }
        }
        fetched.merge(results) { _, new in new }
        let discussions = await discussionLookups(pending, halt: &halt)
        return SubjectLoad(results: results, plans: plans, discussions: discussions)
    }

    /// The subject and newest-comment URLs of the pending issues and pull requests, each once.
    private func subjectJobs(_ pending: [PendingNotification]) -> [FetchJob] {
        var jobs: [FetchJob] = []
        var seen = Set<String>()
        for item in pending where ActivityText.isPullRequest(subjectType: item.thread.subject.type) != nil {
            if let subjectURL = item.thread.subject.url, seen.insert(subjectURL).inserted {
                jobs.append(FetchJob(url: subjectURL, isComment: false))
            }
            if let commentURL = commentURL(for: item.thread), seen.insert(commentURL).inserted {
                jobs.append(FetchJob(url: commentURL, isComment: true))
            }
        }
        return jobs
    }

    /// The comment lists each thread needs, by thread, and the distinct list URLs to fetch.
    ///
    /// `latest_comment_url` names the subject's newest comment when GitHub is polled, not the one that made the
    /// version: a reply the user wrote minutes later moves it. A version older than the comment it names reads the
    /// subject's comments around its `updated_at` to find its own. And GitHub lists only a thread's newest version:
    /// one that appeared after the last listing began and was superseded before this one (or that a sync whose
    /// output was rolled back was handed) is told apart by the subject's comments and `closed_at` (see
    /// `recoveredVersions`), from this listing's `since` but not before the last listing's `before`: what was made
    /// earlier was listable then, and a thread the user is notified about only now may have comments from before
    /// they were subscribed to it.
    private func commentListPlans(
        _ pending: [PendingNotification], window: NotificationWindow, results: [String: FetchResult]
    ) -> ([String: CommentListPlan], [FetchJob]) {
        let querySince = WireFormat.parseDate(QueryDate.format(window.since)) ?? window.since
        let recoverySince = max(querySince, window.listedBefore ?? querySince)
        var plans: [String: CommentListPlan] = [:]
        var listJobs: [FetchJob] = []
        var listed = Set<String>()
        for (threadId, items) in Dictionary(grouping: pending, by: { $0.thread.id }) {
            guard
                let plan = commentListPlan(
                    items, results: results,
                    recoverySince: window.previous != nil || isResync ? recoverySince : nil)
            else { continue }
            plans[threadId] = plan
            for url in plan.urls where listed.insert(url).inserted {
                listJobs.append(FetchJob(url: url, isComment: false, isList: true))
            }
        }
        return (plans, listJobs)
    }

    /// Discussions have no REST subject: one GraphQL query per repository resolves their pages. Once the sync is
    /// halted, the rest are not attempted.
    private func discussionLookups(
        _ pending: [PendingNotification], halt: inout Stop?
    ) async -> [String: DiscussionLookup] {
        var discussions: [String: DiscussionLookup] = [:]
        for item in pending where item.thread.subject.type == "Discussion" {
            let repo = item.thread.repository.full_name
            guard discussions[repo] == nil else { continue }
            if halt != nil {
                discussions[repo] = .notAttempted
                continue
            }
            let (lookup, stop) = await lookUpDiscussions(repo: repo)
            discussions[repo] = lookup
            if let stop { halt = Stop(stop) }
        }
        return discussions
    }

    /// Each thread's versions, oldest first: emitted, kept for the next sync or given up, as their verdicts and the
    /// ledger say.
    private mutating func settleThreads(
        _ pending: [PendingNotification], subjects: SubjectLoad, listedIds: Set<String>,
        ledger: inout StuckSubjectLedger, pass: inout NotificationPass
    ) {
        var byThread: [String: [PendingNotification]] = [:]
        for item in pending { byThread[item.thread.id, default: []].append(item) }
        for (threadId, items) in byThread.sorted(by: { $0.key < $1.key }) {
            let versions = items.sorted { $0.updatedAt < $1.updatedAt }
            let (recovered, verdicts) = verdicts(
                on: versions, thread: threadId, subjects: subjects, listedIds: listedIds)
            let failedNow = verdicts.contains { if case .retry(failed: true) = $0 { true } else { false } }
            var entry = ledger.open(
                thread: threadId, listed: Set(versions.map(\.thread.updated_at)), failedNow: failedNow)
            for activity in recovered { emit(activity) }
            for (item, verdict) in zip(versions, verdicts) {
                apply(verdict, to: item, entry: &entry, ledger: ledger, pass: &pass)
            }
            // A settled thread's versions left behind while failing are emitted from their notification.
            for version in ledger.settle(entry) { emitSuperseded(version, thread: threadId) }
        }
    }

    /// The verdicts on one thread's listed versions, and the versions between the last listing and this one, told
    /// by the subject's comments and state. When those cannot be told yet, every listed version waits too.
    private func verdicts(
        on versions: [PendingNotification], thread threadId: String, subjects: SubjectLoad, listedIds: Set<String>
    ) -> (recovered: [Activity], verdicts: [ItemResult]) {
        let verdicts = versions.map { item -> ItemResult in
            switch item.thread.subject.type {
            case "Discussion":
                discussionActivity(
                    item, lookup: subjects.discussions[item.thread.repository.full_name] ?? .notAttempted)
            case "Release", "Commit": .emit(releaseOrCommitActivity(item))
            default:
                activity(
                    for: item.thread, id: item.id, updatedAt: item.updatedAt, results: subjects.results,
                    lists: subjects.plans[threadId]?.urls ?? [])
            }
        }
        guard let plan = subjects.plans[threadId], let since = plan.recoverySince else { return ([], verdicts) }
        switch recoveredVersions(versions, plan: plan, since: since, results: subjects.results, listed: listedIds) {
        case .found(let activities): return (activities, verdicts)
        case .retry(let failed): return ([], versions.map { _ in .retry(failed: failed) })
        }
    }

    /// One version's verdict: emitted (the watermark may pass it), or retried, and then kept or given up as the
    /// ledger decides.
    private mutating func apply(
        _ verdict: ItemResult, to item: PendingNotification, entry: inout StuckSubjectLedger.Entry,
        ledger: StuckSubjectLedger, pass: inout NotificationPass
    ) {
        switch verdict {
        case .emit(let activity):
            emit(activity)
            pass.processedMax = later(pass.processedMax, item.updatedAt)
        case .unavailable(let activity, let sso):
            emit(activity)
            pass.processedMax = later(pass.processedMax, item.updatedAt)
            pass.unavailable += 1
            if let sso { pass.ssoRequirements.insert(sso) }
        case .skip:
            pass.processedMax = later(pass.processedMax, item.updatedAt)
        case .retry(let failed):
            switch ledger.retry(Self.version(of: item.thread), failed: failed, in: &entry) {
            case .giveUp:
                if let fallback = activityFromNotificationAlone(item) {
                    logger.warning(
                        "subject kept failing; emitted the notification with what it says itself",
                        metadata: [
                            "thread": "\(entry.id)", "failures": "\(entry.failures)",
                            "subject": "\(item.thread.subject.url ?? item.thread.subject.type)",
                        ])
                    emitFallback(fallback, thread: entry.id, at: item.updatedAt)
                }
                pass.processedMax = later(pass.processedMax, item.updatedAt)
            case .keep:
                pass.failedMin = earlier(pass.failedMin, item.updatedAt)
            }
        }
    }

    private mutating func reportSubjectProblems(failedThreads: Int, pass: NotificationPass) {
        if failedThreads > 0, pass.halt == nil {
            problems.append("\(failedThreads) notification subject(s) failed; retried next sync")
        }
        if !pass.ssoRequirements.isEmpty {
            problems.append(
                "subject_unavailable: \(pass.unavailable) notification subject(s) answered 403 because their "
                    + "organization enforces SAML SSO and the token is not authorized for it (X-GitHub-SSO: "
                    + pass.ssoRequirements.sorted().joined(separator: ", ")
                    + "); their activities say only what the notification says")
        }
    }

    /// The watermark and the validator the next sync starts from.
    private mutating func advanceNotificationWatermark(
        _ window: NotificationWindow, listing: NotificationListing, pass: NotificationPass, failedThreads: Int
    ) {
        // The watermark: the newest item processed, but never past one that failed, nor past unread pages.
        var watermark = window.base
        if listing.complete {
            var candidate = pass.processedMax ?? window.base
            if let failedMin = pass.failedMin { candidate = min(candidate, failedMin) }
            watermark = max(window.base, candidate)
        }
        if let previous = window.previous { watermark = max(previous, watermark) }
        state.lastSyncTime = watermark

        // The validator is kept only when everything up to `started` was read: otherwise a 304 next time would
        // hide what is still missing (a failed subject, or a thread touched during this sync).
        // HTTP dates have whole seconds and `before` excludes its own second, so a Last-Modified in that second
        // may stand for a thread this sync did not list: only an earlier one is safe to send back.
        if listing.complete { state.lastListingBefore = window.beforeSecond }
        if listing.complete, failedThreads == 0, pass.halt == nil, let lastModified = listing.lastModified,
            let modified = HTTPDate.parse(lastModified), modified < window.beforeSecond
        {
            state.notificationsLastModified = lastModified
        } else {
            state.notificationsLastModified = nil
        }
    }

    /// The status reason for a token `/notifications` refuses; `detail` says what GitHub said, or when it is asked again.
    private static func unsupportedTokenReason(_ detail: String) -> String {
        "notifications_unsupported_token: GitHub refuses /notifications to this token (\(detail)); GitHub App, "
            + "installation and fine-grained tokens cannot read notifications, so only the user's events are synced. "
            + "Connect the account with a classic OAuth token for them"
    }

    /// When `X-Poll-Interval` lets this listing be read again; nil when it asks for no wait (0, or no header). A
    /// stored "now" would come back from the state rounded to the millisecond and could make an immediate next sync
    /// skip the read.
    private static func nextPoll(after response: GitHubResponse) -> Date? {
        guard let interval = response.pollInterval, interval > 0 else { return nil }
        return Date().addingTimeInterval(Double(interval))
    }

    private struct PendingNotification {
        var thread: NotificationThread
        var id: String
        var updatedAt: Date
    }

    private mutating func emit(_ activity: Activity) {
        activities.append(activity)
        recent.insert(listingKey(activity.id))
    }

    /// A notification emitted without its subject: recorded as a gap, so the degraded text is not a silent loss.
    private mutating func emitFallback(_ activity: Activity, thread: String, at updatedAt: Date) {
        state.gaps.append(.init(from: updatedAt, to: updatedAt, source: "subject:\(thread)"))
        emit(activity)
    }

    /// A failed version the thread has moved on from, from what its notification said.
    private mutating func emitSuperseded(_ version: GitHubState.StuckItem.Version, thread: String) {
        guard let updatedAt = WireFormat.parseDate(version.updatedAt) else { return }
        let notification = NotificationThread(
            id: thread, repository: GitHubRepositoryRef(full_name: version.repo, html_url: version.repoURL),
            subject: .init(title: version.title, url: version.url, type: version.type), reason: version.reason,
            updated_at: version.updatedAt)
        let item = PendingNotification(
            thread: notification, id: Self.notificationId(thread: thread, updatedAt: version.updatedAt),
            updatedAt: updatedAt)
        guard isResync || !recent.contains(listingKey(item.id)), let fallback = activityFromNotificationAlone(item)
        else { return }
        emitFallback(fallback, thread: thread, at: updatedAt)
    }

    private static func version(of thread: NotificationThread) -> GitHubState.StuckItem.Version {
        .init(
            updatedAt: thread.updated_at, reason: thread.reason, type: thread.subject.type, title: thread.subject.title,
            url: thread.subject.url, repo: thread.repository.full_name, repoURL: thread.repository.html_url)
    }

    /// Notification activity ids: `github:notification:{thread}:{updated_at}`, one per version of a thread.
    static let notificationIdPrefix = "github:notification:"
    static let eventIdPrefix = "github:event:"

    static func notificationId(thread: String, updatedAt: String) -> String {
        "\(notificationIdPrefix)\(thread):\(updatedAt)"
    }

    /// `{thread}:{updated_at}` of a notification activity id, as the listing dedupes them.
    private func listingKey(_ id: String) -> String {
        String(id.dropFirst(Self.notificationIdPrefix.count))
    }

    /// Emitted notifications (`{thread}:{updated_at}`) still inside the re-read window; older ones are never listed
    /// again, so keeping them would only make every state record heavier.
    private func prunedRecentIds() -> [String] {
        // The listing's `since` goes out in whole seconds, rounded down: the floor must be too, or a thread in that
        // first second is listed again but already forgotten.
        let floor = state.lastSyncTime.map {
            Date(
                timeIntervalSince1970: $0.addingTimeInterval(-seconds(configuration.overlap)).timeIntervalSince1970
                    .rounded(.down))
        }
        return recent.ids.filter { key in
            guard let floor else { return true }
            guard let colon = key.firstIndex(of: ":"),
                let updatedAt = WireFormat.parseDate(String(key[key.index(after: colon)...]))
            else { return false }
            return updatedAt >= floor
        }
    }

    // MARK: - Discussions

    enum DiscussionLookup: Sendable {
        case found([DiscussionNode])
        /// GraphQL answered that the repository cannot be read (`NOT_FOUND`, `FORBIDDEN`): use the fallback.
        case unavailable
        /// Failed this time: retried by the next sync, like a subject.
        case failed
        case notAttempted
    }

    private static let discussionsQuery =
        "query($owner: String!, $name: String!, $first: Int!) { repository(owner: $owner, name: $name) { "
        + "discussions(first: $first, orderBy: {field: UPDATED_AT, direction: DESC}) { nodes { number title url "
        + "body updatedAt author { login } comments(last: 10) { nodes { url body createdAt author { login } } } } } } }"

    private struct GraphQLBody: Encodable {
        struct Variables: Encodable {
            var owner: String
            var name: String
            var first: Int
        }

        var query: String
        var variables: Variables
    }

    /// The repository's most recently updated discussions, through GraphQL on the configured API host.
    private func lookUpDiscussions(repo: String) async -> (DiscussionLookup, GitHubError?) {
        let parts = repo.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return (.unavailable, nil) }
        let body = GraphQLBody(
            query: Self.discussionsQuery,
            variables: .init(owner: parts[0], name: parts[1], first: configuration.discussionsPerQuery))
        guard let bytes = try? JSONEncoder().encode(body) else { return (.unavailable, nil) }
        do {
            let answer = try await client.postJSON(
                DiscussionsAnswer.self, configuration.graphQLURL, body: Array(bytes), credentials: credentials,
                deadline: deadline)
            guard let nodes = answer.data?.repository?.discussions?.nodes else {
                let types = Set(answer.errors?.compactMap(\.type) ?? [])
                let metadata: Logger.Metadata = [
                    "repo": "\(repo)", "errors": "\(answer.errors?.compactMap(\.message) ?? [])",
                ]
                // Only an answer that says the repository cannot be read is final; anything else (RATE_LIMITED,
                // a timeout, `data: null`) is a failure like a 5xx: retried, and counted towards giving up.
                guard types.contains("NOT_FOUND") || types.contains("FORBIDDEN") else {
                    logger.info("GraphQL failed to list the repository's discussions; retried", metadata: metadata)
                    return (.failed, nil)
                }
                logger.info(
                    "GraphQL could not list the repository's discussions; Discussion notifications use the fallback",
                    metadata: metadata)
                return (.unavailable, nil)
            }
            return (.found(nodes.compactMap { $0 }), nil)
        } catch {
            if error.stopsSync { return (.notAttempted, error) }
            if error.isTransient { return (.failed, nil) }
            logger.info(
                "GraphQL refused the discussions query; Discussion notifications use the fallback",
                metadata: ["repo": "\(repo)", "error": "\(error)"])
            return (.unavailable, nil)
        }
    }

    /// The discussion a notification is about: the only one with its title, or among several with that title the
    /// one updated exactly when the thread was. nil when that is ambiguous: a wrong discussion is worse than the
    /// repository's discussions page.
    private func match(_ thread: NotificationThread, updatedAt: Date, in nodes: [DiscussionNode]) -> DiscussionNode? {
        let title = thread.subject.title ?? ""
        let candidates = nodes.filter { $0.title == title }
        if candidates.count <= 1 { return candidates.first }
        let exact = candidates.filter { $0.updatedAt.flatMap(WireFormat.parseDate) == updatedAt }
        return exact.count == 1 ? exact.first : nil
    }

    /// The comment that made this version of the thread: the newest created no later than its `updated_at` (a
    /// comment added since belongs to the next version).
    private func comment(of node: DiscussionNode?, updatedAt: Date) -> DiscussionNode.Comment? {
        let comments = node?.comments?.nodes?.compactMap { $0 } ?? []
        return comments.compactMap { comment -> (Date, DiscussionNode.Comment)? in
            guard let created = comment.createdAt.flatMap(WireFormat.parseDate), created <= updatedAt else {
                return nil
            }
            return (created, comment)
        }.max { $0.0 < $1.0 }?.1
    }

    private func discussionActivity(_ item: PendingNotification, lookup: DiscussionLookup) -> ItemResult {
        let node: DiscussionNode?
        switch lookup {
        case .found(let nodes): node = match(item.thread, updatedAt: item.updatedAt, in: nodes)
        case .unavailable: node = nil
        case .failed: return .retry(failed: true)
        case .notAttempted: return .retry(failed: false)
        }
        return .emit(discussionActivity(item, node: node))
    }

    /// A Discussion notification as an activity; without `node`, with what the notification itself says and the
    /// repository's discussions page.
    private func discussionActivity(_ item: PendingNotification, node: DiscussionNode?) -> Activity {
        let thread = item.thread
        let repo = thread.repository.full_name
        let repoPage = thread.repository.html_url ?? "https://github.com/\(repo)"
        let comment = comment(of: node, updatedAt: item.updatedAt)
        let mentionsActor = ActivityText.actorReasons.contains(thread.reason)
        let actor = (mentionsActor ? comment?.author?.login : nil) ?? node?.author?.login
        let body = (mentionsActor ? comment?.body : nil) ?? node?.body ?? ""
        let text = ActivityText.discussion(
            reason: thread.reason, username: state.username ?? "", repo: repo, number: node?.number,
            title: node?.title ?? thread.subject.title ?? "", actor: actor ?? "someone", body: body)
        let sourceURL =
            node?.url.flatMap(webURLOrNil) ?? node.map { "\(repoPage)/discussions/\($0.number)" }
            ?? "\(repoPage)/discussions"
        return Activity(
            text: text, sourceURL: sourceURL, id: item.id, occurredAt: item.updatedAt, kind: thread.reason,
            repo: repo, number: node?.number, actor: actor, accountId: request.accountId,
            commentURL: mentionsActor ? comment?.url.flatMap(webURLOrNil) : nil)
    }

    /// A notification whose subject never loaded: what the notification itself says (reason, repository, title,
    /// the number from the subject URL), so it is not lost.
    private func activityFromNotificationAlone(_ item: PendingNotification, detail: String? = nil) -> Activity? {
        let thread = item.thread
        if thread.subject.type == "Discussion" { return discussionActivity(item, node: nil) }
        guard let isPR = ActivityText.isPullRequest(subjectType: thread.subject.type) else { return nil }
        let repo = thread.repository.full_name
        let number = thread.subject.url.flatMap { URLComponents(string: $0)?.path.split(separator: "/").last }
            .flatMap { Int($0) }
        let title = thread.subject.title ?? ""
        let facts = ActivityText.NotificationFacts(
            reason: thread.reason, isPullRequest: isPR, username: state.username ?? "", repo: repo,
            number: number ?? 0, title: title, state: nil, actor: "someone", body: title)
        guard let text = ActivityText.notification(facts) else { return nil }
        let repoPage = thread.repository.html_url ?? "https://github.com/\(repo)"
        return Activity(
            text: text, sourceURL: number.map { "\(repoPage)/\(isPR ? "pull" : "issues")/\($0)" } ?? repoPage,
            id: item.id, occurredAt: item.updatedAt, kind: thread.reason, repo: repo, number: number,
            accountId: request.accountId, detail: detail)
    }

    /// What made this version of a thread. GitHub keeps a thread's `reason` while later bumps have other causes: an
    /// assigned issue that someone comments on is listed again with reason `assign`, a plain comment on a thread
    /// once about a mention with `mention`. When the latest comment was made at the version's `updated_at`, and is
    /// not itself the mention, that comment made the version, and its template (`comment`) tells it.
    /// A thread about a state change that is bumped by a comment is told as the comment, unless the subject was
    /// closed at that moment too (closed with a comment).
    private func cause(
        of thread: NotificationThread, updatedAt: Date, comment: GitHubComment?, closedAt: Date? = nil
    ) -> String {
        guard let comment, let created = comment.created_at.flatMap(WireFormat.parseDate),
            abs(created.timeIntervalSince(updatedAt)) <= Self.sameMoment
        else { return thread.reason }
        switch thread.reason {
        case "assign", "review_requested", "author", "team_mention":
            return "comment"
        case "state_change":
            // Closed in that same second: a close with a comment (a second later is already another version).
            let closedNow = closedAt.map { abs($0.timeIntervalSince(updatedAt)) < 1 } ?? false
            return closedNow ? "state_change" : "comment"
        case "mention":
            let login = (state.username ?? "").lowercased()
            let mentions = !login.isEmpty && (comment.body ?? "").lowercased().contains("@\(login)")
            return mentions ? "mention" : "comment"
        default:
            return thread.reason
        }
    }

    /// Whether the comment a notification names was made after the version (see `syncNotifications`): its own
    /// comment is then found in the subject's comment lists. False when the named comment is the version's own, or
    /// not loaded.
    private func drifted(_ thread: NotificationThread, updatedAt: Date, results: [String: FetchResult]) -> Bool {
        guard ActivityText.isPullRequest(subjectType: thread.subject.type) != nil,
            let commentURL = commentURL(for: thread), case .comment(let comment) = results[commentURL],
            let created = comment.created_at.flatMap(WireFormat.parseDate)
        else { return false }
        return created > updatedAt.addingTimeInterval(Self.sameMoment)
    }

    /// The comment lists one thread's versions need, read once per sync.
    private struct CommentListPlan {
        var urls: [String]
        /// Set when versions between the last listing and this one are looked for: from here on (the later of this
        /// listing's `since` and the last listing's `before`, whole seconds).
        var recoverySince: Date?
    }

    /// Which of the subject's comment lists to read for one thread's listed versions, since when: for a version
    /// whose named comment came later (its own comment is in there), and — given `recoverySince`, not on a first
    /// sync — when the subject has more comments than the listed versions account for, so some may have made
    /// versions GitHub no longer lists. nil when none is needed: an unchanged subject costs nothing extra.
    private func commentListPlan(
        _ items: [PendingNotification], results: [String: FetchResult], recoverySince: Date?
    ) -> CommentListPlan? {
        guard let thread = items.first?.thread, let isPR = ActivityText.isPullRequest(subjectType: thread.subject.type),
            let subjectURL = thread.subject.url,
            subjectURL.range(of: isPR ? "/pulls/" : "/issues/", options: .backwards) != nil,
            case .subject(let subject) = results[subjectURL]
        else { return nil }
        let overlap = seconds(configuration.overlap)
        var since: Date?
        var issueList = false
        var reviewList = false
        for item in items where drifted(item.thread, updatedAt: item.updatedAt, results: results) {
            since = earlier(since, item.updatedAt.addingTimeInterval(-overlap))
            issueList = true
            reviewList = isPR
        }
        var recovering: Date?
        if let recoverySince {
            // Comments the listed versions name as their own are accounted for; any other may be a lost version.
            let own = items.filter { item in
                guard let url = commentURL(for: item.thread), case .comment(let comment) = results[url],
                    let created = comment.created_at.flatMap(WireFormat.parseDate)
                else { return false }
                return abs(created.timeIntervalSince(item.updatedAt)) <= Self.sameMoment
            }.count
            let issueComments = subject.comments ?? 1
            let reviewComments = isPR ? (subject.review_comments ?? 1) : 0
            let closedBetween =
                subject.closed_at.flatMap(WireFormat.parseDate).map { closed in
                    closed >= recoverySince && items.contains { closed < $0.updatedAt }
                } ?? false
            if issueComments + reviewComments > own {
                since = earlier(since, recoverySince)
                issueList = issueList || issueComments > 0
                reviewList = reviewList || reviewComments > 0
                recovering = recoverySince
            } else if closedBetween {
                recovering = recoverySince
            }
        }
        guard since != nil || recovering != nil else { return nil }
        var urls: [String] = []
        if let since {
            let query = "/comments?since=\(QueryDate.format(since))&per_page=100"
            if issueList {
                urls.append((isPR ? replacingLast("/pulls/", with: "/issues/", in: subjectURL) : subjectURL) + query)
            }
            if reviewList { urls.append(subjectURL + query) }
        }
        return CommentListPlan(urls: urls, recoverySince: recovering)
    }

    private enum Recovery {
        case found([Activity])
        case retry(failed: Bool)
    }

    /// The versions of a thread between `since` and its newest listed version that GitHub no longer lists, from its
    /// subject: each comment someone else made (a `comment`, or a `mention` when it names the user) and a state
    /// change someone else made (`closed_at`, by `merged_by` / `closed_by`), at a second no listed version has and
    /// not emitted before. Their ids are the ones GitHub's listing would have given them.
    private func recoveredVersions(
        _ versions: [PendingNotification], plan: CommentListPlan, since: Date, results: [String: FetchResult],
        listed: Set<String>
    ) -> Recovery {
        guard let newest = versions.last, let subjectURL = newest.thread.subject.url,
            case .subject(let subject) = results[subjectURL],
            let isPR = ActivityText.isPullRequest(subjectType: newest.thread.subject.type)
        else { return .found([]) }
        var comments: [GitHubComment] = []
        for url in plan.urls {
            switch results[url] ?? .notAttempted {
            case .comments(let list): comments += list
            case .failed: return .retry(failed: true)
            case .notAttempted: return .retry(failed: false)
            case .subject, .comment, .gone, .unavailable: break
            }
        }
        let login = (state.username ?? "").lowercased()
        let listedSeconds = Set(versions.map { $0.updatedAt.timeIntervalSince1970.rounded(.down) })
        var named = Set<Int>()
        for item in versions {
            if let url = commentURL(for: item.thread), case .comment(let comment) = results[url],
                let created = comment.created_at.flatMap(WireFormat.parseDate),
                abs(created.timeIntervalSince(item.updatedAt)) <= Self.sameMoment
            {
                named.insert(comment.id)
            }
        }
        var found: [String: Activity] = [:]
        func consider(_ stamp: String?, by actor: String?, make: (String, Date) -> Activity?) {
            guard let stamp, let date = WireFormat.parseDate(stamp), date >= since, date < newest.updatedAt,
                !listedSeconds.contains(date.timeIntervalSince1970.rounded(.down)),
                (actor ?? "").lowercased() != login || login.isEmpty
            else { return }
            let id = Self.notificationId(thread: newest.thread.id, updatedAt: stamp)
            // A version this listing showed is what the listing said, whatever its reason.
            guard found[id] == nil, !listed.contains(listingKey(id)), isResync || !recent.contains(listingKey(id)),
                let activity = make(stamp, date)
            else { return }
            found[id] = activity
        }
        for comment in comments where !named.contains(comment.id) {
            consider(comment.created_at, by: comment.user?.login) { stamp, date in
                let body = comment.body ?? ""
                let mentions = !login.isEmpty && body.lowercased().contains("@\(login)")
                return recoveredActivity(
                    newest.thread, subject: subject, isPR: isPR, stamp: stamp, date: date,
                    made: mentions ? "mention" : "comment", actor: comment.user?.login, body: body,
                    commentPage: comment.html_url.flatMap(webURLOrNil))
            }
        }
        if subject.state == "closed" {
            let closer = subject.merged_by?.login ?? subject.closed_by?.login
            consider(subject.closed_at, by: closer) { stamp, date in
                recoveredActivity(
                    newest.thread, subject: subject, isPR: isPR, stamp: stamp, date: date, made: "state_change",
                    actor: closer ?? subject.user?.login, body: subject.body ?? "", commentPage: nil)
            }
        }
        return .found(found.values.sorted { ($0.occurredAt, $0.id) < ($1.occurredAt, $1.id) })
    }

    /// A recovered version of `thread` (see `recoveredVersions`), told as what made it.
    private func recoveredActivity(
        _ thread: NotificationThread, subject: IssueOrPull, isPR: Bool, stamp: String, date: Date, made: String,
        actor: String?, body: String, commentPage: String?
    ) -> Activity? {
        let repo = thread.repository.full_name
        let facts = ActivityText.NotificationFacts(
            reason: made, isPullRequest: isPR, username: state.username ?? "", repo: repo, number: subject.number,
            title: subject.title, state: subject.state, actor: actor ?? subject.user?.login ?? "", body: body)
        guard let text = ActivityText.notification(facts) else { return nil }
        return Activity(
            text: text, sourceURL: webURL(subject, repository: thread.repository, isPR: isPR),
            id: Self.notificationId(thread: thread.id, updatedAt: stamp), occurredAt: date, kind: made, repo: repo,
            number: subject.number, actor: actor ?? subject.user?.login, accountId: request.accountId,
            commentURL: commentPage)
    }

    private func replacingLast(_ target: String, with replacement: String, in text: String) -> String {
        guard let range = text.range(of: target, options: .backwards) else { return text }
        return text.replacingCharacters(in: range, with: replacement)
    }

    /// How far a comment's `created_at` may be from a thread version's `updated_at` and still be what made it.
    private static let sameMoment: TimeInterval = 2

    /// A Release or Commit notification (kept reasons only): what it says, linked to the repository's releases page or
    /// the commit's page. Nothing is fetched, so it costs no quota.
    private func releaseOrCommitActivity(_ item: PendingNotification) -> Activity {
        let thread = item.thread
        let repo = thread.repository.full_name
        let repoPage = thread.repository.html_url ?? "\(configuration.effectiveWebBaseURL)/\(repo)"
        var sourceURL = "\(repoPage)/releases"
        if thread.subject.type == "Commit" {
            let sha =
                thread.subject.url.flatMap { URLComponents(string: $0)?.path.split(separator: "/").last }
                .map(String.init) ?? ""
            let isSHA = !sha.isEmpty && sha.allSatisfy(\.isHexDigit)
            sourceURL = isSHA ? "\(repoPage)/commit/\(sha)" : "\(repoPage)/commits"
        }
        return Activity(
            text: ActivityText.otherSubject(
                username: state.username ?? "", repo: repo, type: thread.subject.type, title: thread.subject.title ?? ""
            ),
            sourceURL: sourceURL, id: item.id, occurredAt: item.updatedAt, kind: thread.reason, repo: repo,
            accountId: request.accountId)
    }

    /// The comment URL a notification names, when it names a comment: its author and body tell the comment and
    /// mention reasons, and whether a comment made this version tells the others.
    private func commentURL(for thread: NotificationThread) -> String? {
        guard ActivityText.keptReasons.contains(thread.reason),
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
        /// GitHub refuses the subject to this token (403, 404, 410): emitted from the notification, marked.
        case unavailable(Activity, sso: String?)
        case skip
        /// Try again next sync; `failed` when the subject was requested and failed (it counts towards giving up),
        /// not when the sync stopped before requesting it.
        case retry(failed: Bool)
    }

    private func activity(
        for thread: NotificationThread, id: String, updatedAt: Date, results: [String: FetchResult], lists: [String]
    ) -> ItemResult {
        guard let isPR = ActivityText.isPullRequest(subjectType: thread.subject.type) else { return .skip }
        guard let subjectURL = thread.subject.url else {
            logger.info("notification without a subject URL skipped", metadata: ["thread": "\(thread.id)"])
            return .skip
        }
        let subject: IssueOrPull
        switch results[subjectURL] ?? .notAttempted {
        case .subject(let value): subject = value
        case .comment, .comments, .gone: return .skip
        case .unavailable(_, let sso):
            let item = PendingNotification(thread: thread, id: id, updatedAt: updatedAt)
            guard let fallback = activityFromNotificationAlone(item, detail: Activity.subjectUnavailable) else {
                return .skip
            }
            return .unavailable(fallback, sso: sso)
        case .failed: return .retry(failed: true)
        case .notAttempted: return .retry(failed: false)
        }
        let latestComment: GitHubComment?
        switch ownComment(of: thread, updatedAt: updatedAt, results: results, lists: lists) {
        case .found(let comment): latestComment = comment
        case .verdict(let verdict): return verdict
        }
        return activity(for: thread, id: id, updatedAt: updatedAt, subject: subject, isPR: isPR, comment: latestComment)
    }

    /// The comment a version is told by, or the verdict when it cannot be told yet (or is skipped).
    private enum CommentLookup {
        case found(GitHubComment?)
        case verdict(ItemResult)
    }

    /// The comment that made this version: the one the notification names, or, when that came after the version,
    /// the newest in the subject's comment lists made no later than it.
    private func ownComment(
        of thread: NotificationThread, updatedAt: Date, results: [String: FetchResult], lists: [String]
    ) -> CommentLookup {
        var latestComment: GitHubComment?
        if let commentURL = commentURL(for: thread) {
            switch results[commentURL] ?? .notAttempted {
            case .comment(let comment): latestComment = comment
            case .subject, .comments: break
            case .gone: return .verdict(.skip)  // a comment URL outside the API origin: the item is skipped
            case .unavailable: break  // the comment was deleted (or hidden): the subject's author and body
            case .failed: return .verdict(.retry(failed: true))
            case .notAttempted: return .verdict(.retry(failed: false))
            }
        }
        if drifted(thread, updatedAt: updatedAt, results: results), !lists.isEmpty {
            // The named comment came after this version: its own is the newest made no later than it, if any.
            var found: [GitHubComment] = []
            for url in lists {
                switch results[url] ?? .notAttempted {
                case .comments(let comments): found += comments
                case .failed: return .verdict(.retry(failed: true))
                case .notAttempted: return .verdict(.retry(failed: false))
                case .subject, .comment, .gone, .unavailable: break
                }
            }
            let limit = updatedAt.addingTimeInterval(Self.sameMoment)
            latestComment =
                found.compactMap { comment -> (Date, GitHubComment)? in
                    guard let created = comment.created_at.flatMap(WireFormat.parseDate), created <= limit else {
                        return nil
                    }
                    return (created, comment)
                }.max { $0.0 < $1.0 }?.1
        }
        return .found(latestComment)
    }

    /// A notification version told from its loaded subject and the comment that made it.
    private func activity(
        for thread: NotificationThread, id: String, updatedAt: Date, subject: IssueOrPull, isPR: Bool,
        comment latestComment: GitHubComment?
    ) -> ItemResult {
        let made = cause(
            of: thread, updatedAt: updatedAt, comment: latestComment,
            closedAt: subject.closed_at.flatMap(WireFormat.parseDate))
        let mentionsActor = ActivityText.actorReasons.contains(made)
        var actor = subject.user?.login ?? ""
        var body = subject.body ?? ""
        var commentPage: String?
        if mentionsActor, let comment = latestComment {
            actor = comment.user?.login ?? actor
            body = comment.body ?? ""
            commentPage = comment.html_url.flatMap(webURLOrNil)
        }
        // A state change is told by who made it, when GitHub says: `merged_by` of a merged pull request,
        // `closed_by` of a closed issue; else whoever commented last (or the author), as before.
        if made == "state_change", subject.state == "closed",
            let closer = subject.merged_by?.login ?? subject.closed_by?.login
        {
            actor = closer
        }
        let repo = thread.repository.full_name
        let facts = ActivityText.NotificationFacts(
            reason: made, isPullRequest: isPR, username: state.username ?? "", repo: repo,
            number: subject.number, title: subject.title, state: subject.state, actor: actor, body: body)
        guard let text = ActivityText.notification(facts) else { return .skip }
        return .emit(
            Activity(
                text: text, sourceURL: webURL(subject, repository: thread.repository, isPR: isPR), id: id,
                occurredAt: updatedAt, kind: made, repo: repo, number: subject.number,
                actor: mentionsActor ? actor : subject.user?.login, accountId: request.accountId,
                commentURL: commentPage))
    }

    /// The subject's web page; never an API URL.
    private func webURL(_ subject: IssueOrPull, repository: GitHubRepositoryRef, isPR: Bool) -> String {
        if let html = subject.html_url { return html }
        if isPR, let html = subject.pull_request?.html_url { return html }
        guard let repoPage = repository.html_url else { return "" }
        return "\(repoPage)/\(isPR ? "pull" : "issues")/\(subject.number)"
    }

    // MARK: - Events

    /// Where this sync's event read goes, fixed before its first request.
    private struct EventWindow {
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
    private struct EventListing {
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

    private mutating func syncEvents() async throws(Stop) {
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

    /// The watermark, the ids and the ETag the next read starts from. `settled`: nothing halted the sync and no
    /// event waits for its pull request.
    private mutating func advanceEventWatermark(_ window: EventWindow, listing: EventListing, settled: Bool) {
        var watermark = window.previous ?? window.base
        if listing.complete { watermark = max(watermark, listing.processedMax ?? watermark) }
        state.lastUserEventTime = watermark
        // Remember the ids down to where the next read will look; a complete read saw every one of them.
        let nextHorizon = watermark.addingTimeInterval(-seconds(configuration.eventLagHorizon))
        if listing.complete, !isResync {
            state.eventIds = listing.listed.filter { $0.created >= nextHorizon }.map(\.id)
        } else if listing.complete {
            // A resync read only down to its own `since`: the ids known below it still count, or the next normal
            // read (down to the lag horizon) would emit them again.
            state.eventIds = boundedIds(
                window.known.union(listing.listed.filter { $0.created >= nextHorizon }.map(\.id)))
        } else {
            state.eventIds = boundedIds(listing.seenIds.union(listing.listed.map(\.id)))
        }
        // The first page's ETag is kept even when that page does not reach the horizon: an unchanged account must
        // cost no quota. A late event lower down then waits for the first page to change (any new event), and is
        // emitted by that read, which goes down to the horizon again; while nothing new happens the horizon stays
        // where it is, so it cannot slip below it.
        state.eventsETag = listing.complete && settled ? listing.etag : nil
    }

    /// Event ids in a stable order (oldest first: GitHub's ids grow), at most as many as GitHub keeps, so the state
    /// stays bounded and its bytes do not depend on set order.
    private func boundedIds(_ ids: Set<String>) -> [String] {
        let sorted = ids.sorted { ($0.count, $0) < ($1.count, $1) }
        return Array(sorted.suffix(max(1, configuration.eventHistoryLimit)))
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

/// The URL when it is a web link (http or https); nil otherwise, so an odd value never reaches a record.
private func webURLOrNil(_ url: String) -> String? {
    url.hasPrefix("https://") || url.hasPrefix("http://") ? url : nil
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
