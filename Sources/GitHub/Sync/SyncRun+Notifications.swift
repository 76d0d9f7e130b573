import Foundation
import IntegrationCatalog
import Logging
import SyncModel

/// The notifications phase, in order: due or not, the window, the pager, the pending versions, their subjects, the
/// verdicts per thread (with the stuck-subject ledger), the problems reported, then the watermark and validator.
extension SyncRun {
    /// Where this sync's notification listing reads, fixed before its first request.
    struct NotificationWindow {
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

    /// What the phases after the listing carry to the watermark and the status.
    struct NotificationPass {
        /// The newest version settled (emitted, skipped or given up).
        var processedMax: Date?
        /// The oldest version kept for the next sync.
        var failedMin: Date?
        var halt: Stop?
        var unavailable = 0
        var ssoRequirements = Set<String>()
    }

    struct PendingNotification {
        var thread: NotificationThread
        var id: String
        var updatedAt: Date
    }

    mutating func syncNotifications() async throws(Stop) {
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

    /// The status reason for a token `/notifications` refuses; `detail` says what GitHub said, or when it is asked again.
    static func unsupportedTokenReason(_ detail: String) -> String {
        "notifications_unsupported_token: GitHub refuses /notifications to this token (\(detail)); GitHub App, "
            + "installation and fine-grained tokens cannot read notifications, so only the user's events are synced. "
            + "Connect the account with a classic OAuth token for them"
    }
}
