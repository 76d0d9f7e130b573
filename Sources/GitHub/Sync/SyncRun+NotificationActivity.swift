import Foundation
import IntegrationCatalog
import Logging
import SyncModel

/// How one notification version is told: its verdict, the comment that made it, its cause and its activity.
extension SyncRun {
    enum ItemResult {
        case emit(Activity)
        /// GitHub refuses the subject to this token (403, 404, 410): emitted from the notification, marked.
        case unavailable(Activity, sso: String?)
        case skip
        /// Try again next sync; `failed` when the subject was requested and failed (it counts towards giving up),
        /// not when the sync stopped before requesting it.
        case retry(failed: Bool)
    }

    func activity(
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
    func webURL(_ subject: IssueOrPull, repository: GitHubRepositoryRef, isPR: Bool) -> String {
        if let html = subject.html_url { return html }
        if isPR, let html = subject.pull_request?.html_url { return html }
        guard let repoPage = repository.html_url else { return "" }
        return "\(repoPage)/\(isPR ? "pull" : "issues")/\(subject.number)"
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
    func drifted(_ thread: NotificationThread, updatedAt: Date, results: [String: FetchResult]) -> Bool {
        guard ActivityText.isPullRequest(subjectType: thread.subject.type) != nil,
            let commentURL = commentURL(for: thread), case .comment(let comment) = results[commentURL],
            let created = comment.created_at.flatMap(WireFormat.parseDate)
        else { return false }
        return created > updatedAt.addingTimeInterval(Self.sameMoment)
    }

    /// How far a comment's `created_at` may be from a thread version's `updated_at` and still be what made it.
    static let sameMoment: TimeInterval = 2

    /// The comment URL a notification names, when it names a comment: its author and body tell the comment and
    /// mention reasons, and whether a comment made this version tells the others.
    func commentURL(for thread: NotificationThread) -> String? {
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

    /// A Release or Commit notification (kept reasons only): what it says, linked to the repository's releases page or
    /// the commit's page. Nothing is fetched, so it costs no quota.
    func releaseOrCommitActivity(_ item: PendingNotification) -> Activity {
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

    /// A notification whose subject never loaded: what the notification itself says (reason, repository, title,
    /// the number from the subject URL), so it is not lost.
    func activityFromNotificationAlone(_ item: PendingNotification, detail: String? = nil) -> Activity? {
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
}
