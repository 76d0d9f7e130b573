import Foundation
import IntegrationCatalog
import SyncModel

/// Thread versions GitHub no longer lists, recovered from their subject when the thread is listed again: a version
/// made after one listing began and superseded before the next, or handed to a sync whose output was rolled back.
extension SyncRun {
    enum Recovery {
        case found([Activity])
        case retry(failed: Bool)
    }

    /// The versions of a thread between `since` and its newest listed version that GitHub no longer lists, from its
    /// subject: each comment someone else made (a `comment`, or a `mention` when it names the user) and a state
    /// change someone else made (`closed_at`, by `merged_by` / `closed_by`), at a second no listed version has and
    /// not emitted before. Their ids are the ones GitHub's listing would have given them.
    func recoveredVersions(
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
        return .found(
            recoveredActivities(
                of: versions, newest: newest, subject: subject, isPR: isPR, comments: comments, since: since,
                results: results, listed: listed))
    }

    /// The activities of the versions the subject's comments and close tell (see `recoveredVersions`), oldest first.
    /// A comment or close by the user made no notification for them, and one at a listed version's second is that
    /// version: neither is recovered, nor is what the listing showed or this account was already handed.
    private func recoveredActivities(
        of versions: [PendingNotification], newest: PendingNotification, subject: IssueOrPull, isPR: Bool,
        comments: [GitHubComment], since: Date, results: [String: FetchResult], listed: Set<String>
    ) -> [Activity] {
        let login = (state.username ?? "").lowercased()
        let listedSeconds = Set(versions.map { $0.updatedAt.timeIntervalSince1970.rounded(.down) })
        let named = ownCommentIds(of: versions, results: results)
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
        return found.values.sorted { ($0.occurredAt, $0.id) < ($1.occurredAt, $1.id) }
    }

    /// The ids of the comments the listed versions name as their own (made at their `updated_at`): those versions
    /// are listed, so their comments are not recovered again.
    private func ownCommentIds(of versions: [PendingNotification], results: [String: FetchResult]) -> Set<Int> {
        Set(versions.compactMap { ownComment(of: $0, results: results)?.id })
    }

    /// The comment a listed version names as its own: its `latest_comment_url`'s comment, made at the moment the
    /// version was (a version bumped by something else, or whose comment moved on, names none).
    func ownComment(of version: PendingNotification, results: [String: FetchResult]) -> GitHubComment? {
        guard let url = commentURL(for: version.thread), case .comment(let comment) = results[url],
            let created = comment.created_at.flatMap(WireFormat.parseDate),
            abs(created.timeIntervalSince(version.updatedAt)) <= Self.sameMoment
        else { return nil }
        return comment
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
}
