import Foundation

/// The ground truth: what a correct poller of one account must produce, with the texts of issue 3.
///
/// Rules, in one place so tests and the GitHub integration can be checked against them:
/// - Notifications: kept reasons `assign`, `review_requested`, `mention`, `state_change`, `author`, `comment`,
///   `team_mention`; kept subject types `Issue`, `PullRequest`, `Discussion`, `Release` and `Commit` (the last two
///   as `GitHub notification for {user} in {repo} release|commit: {title}`, linked to the repository's releases page
///   or the commit's page). Threads whose subject URL a test
///   moved to another host are excluded (a correct client refuses to follow them). Every *version* of a thread is
///   its own activity (`github:notification:{thread}:{updated_at}`): GitHub keeps one thread per subject and user
///   and re-bumps it on new activity, so `truth` lists every version with the time it was superseded.
/// - Actor and body come from the comment `latest_comment_url` names, otherwise from the issue or pull request.
///   Discussions: from the discussion's latest comment, otherwise the discussion; texts `{actor} mentioned {user}
///   in {repo} discussion #{n}: {body}`, `{actor} commented on discussion #{n} in {repo}: {body}`, and `GitHub
///   notification for {user} in {repo}` for the other reasons; `sourceURL` is the discussion's page.
/// - Events: `PullRequestEvent`/`IssuesEvent` with action `opened`, `IssueCommentEvent`,
///   `PullRequestReviewCommentEvent` and `PullRequestReviewEvent` (`pr_review`: `{user} reviewed PR #{n}: {title}`,
///   linked to the review) with action `created`; every event in the window counts, also ones the
///   300-event cap hides by now.
/// - Window: `from ≤ time ≤ to`, and never later than now.
///
/// "Seen by a poll" (`polledTruth`), because a version replaced before any client listed it, or an event not yet
/// visible, cannot be asked of anyone:
/// - a thread version was *seen* if it was the current, visible version at the time of some notifications
///   listing request of the account (served or 304) whose `before` it precedes; it is *required* if a 200 page
///   actually delivered it to the account (the client was handed it: dropping it is a loss, even when the thread
///   moved on before the next listing), or if it stayed current from the start of one listing to the start of the
///   next listing (or until now). A listing starts with a request whose `before` is absent or later than the
///   previous request's; pages of one listing walk `before` down or keep it. A version replaced in the middle of a
///   multi-page listing before any page held it may legitimately be missed: GitHub no longer lists it, and its
///   successor carries the news.
/// - an event was *seen* if it was visible, past its lag, at some events request of the account; it is
///   *required* only if a 200 events page delivered it. One below an unchanged first page (a 304, or a page the
///   client had no reason to read) waits, legitimately, for the next read that goes that deep.
/// - a superseded version that GitHub's data tells apart once a later version of its thread is listed is
///   *recoverable*: one made by someone else's comment on the issue or pull request (the comment's `created_at` is
///   the version's `updated_at`; the comment lists of the subject show it), or a state change by someone else (the
///   subject's `closed_at`, with `closed_by` / `merged_by`). It is *seen* once a 200 page delivered a later kept
///   version of its thread in a listing whose `since` is not later than it, and *required* when that listing is not
///   the account's first (a first sync has nothing to recover between) and the listing before it began with a
///   `before` not later than it (an older version was listable then). This is how a version that appeared after
///   a listing began and was superseded before the next one, or one a client was handed but whose output was
///   rolled back (an aborted Kafka transaction) while its thread moved on, is still owed.
/// - Pages cut by an injected `malformedJSON` fault deliver nothing.
extension WorldState {
    static let keptReasons: Set<String> = [
        "assign", "review_requested", "mention", "state_change", "author", "comment", "team_mention",
    ]

    /// Reasons whose activity names the comment's author and links the comment (the truth's own list, kept apart
    /// from the client's on purpose).
    static let actorReasons: Set<String> = ["mention", "comment", "state_change"]

    /// The activity id of a thread version: `github:notification:{thread}:{updated_at}`.
    static func notificationActivityId(thread: Int64, updatedAt: Int64) -> String {
        "github:notification:\(thread):\(Timestamp.rfc3339(updatedAt))"
    }

    static func eventActivityId(_ event: Int64) -> String { "github:event:\(event)" }

    func truth(user: Int, from: Int64, to: Int64) -> [ExpectedActivity] {
        let account = account(user)
        let username = account.person.login
        var result: [ExpectedActivity] = []
        for thread in account.threads.values {
            for version in thread.versions where version.updatedAt >= from && version.updatedAt <= to {
                if let activity = expected(thread, version: version, username: username) { result.append(activity) }
            }
        }
        let eventLow = account.eventOrder.lowerBound(OrderKey(time: from, id: Int64.min))
        for key in account.eventOrder[eventLow...] where key.time <= to {
            if let event = account.events[key.id], let activity = expected(event, username: username) {
                result.append(activity)
            }
        }
        return result.sorted { ($0.occurredAt, $0.id) < ($1.occurredAt, $1.id) }
    }

    /// `truth` narrowed to what polls of the account up to `until` could see; see the rules above.
    func polledTruth(user: Int, from: Int64, to: Int64, until: Double, now: Double) -> PolledTruth {
        let all = truth(user: user, from: from, to: to)
        let account = account(user)
        var starts: [ListingRequest] = []
        var lastBefore: Int64?? = .none
        for request in account.listings {
            let startsListing: Bool
            switch lastBefore {
            case .none: startsListing = true
            case .some(let previous):
                if let before = request.before, let previous {
                    startsListing = before > previous
                } else {
                    startsListing = true
                }
            }
            if startsListing { starts.append(request) }
            lastBefore = .some(request.before)
        }
        let listings = account.listings.filter { $0.time <= until }
        let lastEventPoll = account.eventPolls.last { $0 <= until }.map { $0.rounded(.down) }
        func served(_ activity: ExpectedActivity) -> Bool { (account.served[activity.id] ?? .infinity) <= until }
        var seen: [ExpectedActivity] = []
        var required: [ExpectedActivity] = []
        for activity in all {
            if activity.id.hasPrefix("github:event:") {
                if let lastEventPoll, activity.visibleFrom.timeIntervalSince1970 <= lastEventPoll {
                    seen.append(activity)
                    if served(activity) { required.append(activity) }
                }
                continue
            }
            let updatedAt = activity.occurredAt.timeIntervalSince1970
            let from = activity.visibleFrom.timeIntervalSince1970
            let superseded = activity.supersededAt?.timeIntervalSince1970 ?? .infinity
            func listable(_ request: ListingRequest) -> Bool {
                from <= request.time && request.time < superseded
                    && (request.before.map { updatedAt < Double($0) } ?? true)
            }
            let delivered = served(activity)
            guard delivered || listings.contains(where: listable) else { continue }
            seen.append(activity)
            if delivered {
                required.append(activity)
                continue
            }
            for (index, start) in starts.enumerated() where start.time <= until && listable(start) {
                let end = index + 1 < starts.count ? starts[index + 1].time : now
                if superseded > end {
                    required.append(activity)
                    break
                }
            }
        }
        // Superseded versions a client recovers when it lists a later version of the thread (see the rules above).
        let secondStart = starts.count > 1 ? starts[1].time : .infinity
        let seenIds = Set(seen.map(\.id))
        let requiredIds = Set(required.map(\.id))
        let expectedIds = Set(all.map(\.id))
        let laterVersions = recoverableVersions(user: user)
        for activity in all where !requiredIds.contains(activity.id) {
            guard let later = laterVersions[activity.id] else { continue }
            let updatedAt = activity.occurredAt.timeIntervalSince1970
            var isSeen = false
            var isRequired = false
            for id in later where expectedIds.contains(id) {
                guard let servedAt = account.served[id], servedAt <= until,
                    let listing = account.listings.last(where: { $0.time <= servedAt }), let since = listing.since,
                    Double(since) <= updatedAt
                else { continue }
                isSeen = true
                // Required from the listing before this one on: what was made earlier was listable then.
                guard listing.time >= secondStart, let start = starts.lastIndex(where: { $0.time <= listing.time }),
                    start > 0
                else { continue }
                if let previous = starts[start - 1].before, Double(previous) > updatedAt { continue }
                isRequired = true
            }
            if isSeen, !seenIds.contains(activity.id) { seen.append(activity) }
            if isRequired { required.append(activity) }
        }
        return PolledTruth(seen: seen, required: required)
    }

    /// Superseded versions of `user`'s issue and pull request threads that GitHub's data lets a client recover (see
    /// the rules above), by activity id, each with the ids of the later versions of its thread.
    func recoverableVersions(user: Int) -> [String: [String]] {
        let account = account(user)
        let login = account.person.login.lowercased()
        var result: [String: [String]] = [:]
        for thread in account.threads.values where !thread.previous.isEmpty && thread.foreignHost == nil {
            guard let key = thread.subject, let subject = subjects[key] else { continue }
            let versions = thread.versions
            let ids = versions.map { Self.notificationActivityId(thread: thread.id, updatedAt: $0.updatedAt) }
            for (index, version) in versions.enumerated().dropLast() where Self.keptReasons.contains(version.reason) {
                var recoverable = false
                if case .comment(let id) = version.latest, let comment = comments[id],
                    comment.createdAt == version.updatedAt, comment.author.login.lowercased() != login
                {
                    recoverable = true
                } else if (version.cause ?? version.reason) == "state_change", subject.state == "closed",
                    subject.closedAt == version.updatedAt, subject.closedBy?.login.lowercased() != login
                {
                    recoverable = true
                }
                if recoverable { result[ids[index]] = Array(ids[(index + 1)...]) }
            }
        }
        return result
    }

    func expected(_ thread: NotificationThread, version: ThreadVersion, username: String) -> ExpectedActivity? {
        guard Self.keptReasons.contains(version.reason), thread.foreignHost == nil else { return nil }
        let id = Self.notificationActivityId(thread: thread.id, updatedAt: version.updatedAt)
        let visibleFrom = Date(timeIntervalSince1970: version.currentFrom)
        let supersededAt = version.supersededAt.isFinite ? Date(timeIntervalSince1970: version.supersededAt) : nil
        let mentionsActor = Self.actorReasons.contains(version.reason)
        if thread.subjectType == "Discussion" {
            guard let key = thread.discussion, let discussion = discussions[key] else { return nil }
            let repo = repos[key.repo].fullName
            var actor = discussion.author.login
            var body = discussion.body
            var commentURL: String?
            let page = "\(params.htmlBase)/\(repo)/discussions/\(key.number)"
            if case .comment(let id) = version.latest, let comment = discussionComments[id] {
                actor = comment.author.login
                body = comment.body
                if mentionsActor { commentURL = "\(page)#discussioncomment-\(id)" }
            }
            let text: String
            switch version.reason {
            case "mention": text = "\(actor) mentioned \(username) in \(repo) discussion #\(key.number): \(body)"
            case "comment": text = "\(actor) commented on discussion #\(key.number) in \(repo): \(body)"
            case "state_change":
                text = "\(actor) changed discussion #\(key.number) state  in \(repo): \(discussion.title)"
            default: text = "GitHub notification for \(username) in \(repo)"
            }
            return ExpectedActivity(
                id: id, kind: version.reason, occurredAt: Timestamp.date(version.updatedAt), text: text,
                sourceURL: page, repo: repo, number: key.number, commentURL: commentURL, visibleFrom: visibleFrom,
                supersededAt: supersededAt)
        }
        if thread.subjectType == "Release" || thread.subjectType == "Commit" {
            // No conversation to quote: what the notification says, in the seed's generic shape.
            let repo = repos[thread.repo].fullName
            let page = "\(params.htmlBase)/\(repo)"
            let isRelease = thread.subjectType == "Release"
            return ExpectedActivity(
                id: id, kind: version.reason, occurredAt: Timestamp.date(version.updatedAt),
                text:
                    "GitHub notification for \(username) in \(repo) \(isRelease ? "release" : "commit"): \(thread.title)",
                sourceURL: isRelease ? "\(page)/releases" : "\(page)/commit/\(thread.commitSHA ?? "")", repo: repo,
                number: 0, visibleFrom: visibleFrom, supersededAt: supersededAt)
        }
        guard thread.subjectType == "Issue" || thread.subjectType == "PullRequest",
            let key = thread.subject, let subject = subjects[key]
        else { return nil }
        let repo = repos[key.repo].fullName
        let isPR = thread.subjectType == "PullRequest"
        // The template is the one of what made this version: a comment on a thread that keeps its reason is a
        // comment, not the assignment or mention again.
        let made = version.cause ?? version.reason
        let linksComment = Self.actorReasons.contains(made)
        var actor = subject.author.login
        var body = subject.body
        var commentURL: String?
        if case .comment(let id) = version.latest, let comment = comments[id] {
            actor = comment.author.login
            body = comment.body
            if linksComment { commentURL = commentHTML(comment) }
        }
        // A state change is told by who made it: the issue's `closed_by`, the pull request's `merged_by` (a pull
        // request's JSON does not say who closed it unmerged).
        if made == "state_change", subject.state == "closed", let closer = subject.closedBy,
            !isPR || subject.merged
        {
            actor = closer.login
        }
        let number = key.number
        let title = subject.title
        let text: String
        switch made {
        case "assign":
            text = "\(isPR ? "PR" : "Issue") #\(number) assigned to \(username) in \(repo): \(title)"
        case "review_requested":
            text = "\(username) requested to review PR #\(number) in \(repo): \(title)"
        case "mention":
            text = "\(actor) mentioned \(username) in \(repo) \(isPR ? "PR" : "issue") #\(number): \(body)"
        case "comment":
            text = "\(actor) commented on \(isPR ? "PR" : "issue") #\(number) in \(repo): \(body)"
        case "state_change":
            text = "\(actor) changed \(isPR ? "PR" : "issue") #\(number) state to \(subject.state) in \(repo): \(title)"
        default:  // author, team_mention
            text = "GitHub notification for \(username) in \(repo)"
        }
        return ExpectedActivity(
            id: id, kind: made, occurredAt: Timestamp.date(version.updatedAt), text: text,
            sourceURL: subjectHTML(subject), repo: repo, number: number, commentURL: commentURL,
            visibleFrom: visibleFrom, supersededAt: supersededAt)
    }

    func expected(_ event: UserEvent, username: String) -> ExpectedActivity? {
        guard let subject = event.subject else { return nil }
        let kind: String
        let text: String
        switch (event.type, event.action) {
        case ("PullRequestEvent", "opened"):
            kind = "pr_opened"
            text = "\(username) created PR #\(subject.key.number): \(subject.title)"
        case ("IssuesEvent", "opened"):
            kind = "issue_opened"
            text = "\(username) created issue #\(subject.key.number): \(subject.title)"
        case ("PullRequestReviewEvent", "created"):
            kind = "pr_review"
            text = "\(username) reviewed PR #\(subject.key.number): \(subject.title)"
        case ("IssueCommentEvent", "created"), ("PullRequestReviewCommentEvent", "created"):
            let isPR = subject.isPullRequest
            kind = isPR ? "pr_comment" : "issue_comment"
            text = "\(username) commented on \(isPR ? "PR" : "issue") #\(subject.key.number): \(subject.title)"
        default:
            return nil
        }
        let commentURL =
            kind == "pr_review"
            ? event.review.map { reviewHTML($0, on: subject) }
            : kind.hasSuffix("_comment") ? event.comment.map(commentHTML) : nil
        return ExpectedActivity(
            id: Self.eventActivityId(event.id), kind: kind, occurredAt: Timestamp.date(event.createdAt), text: text,
            sourceURL: subjectHTML(subject), repo: repos[subject.key.repo].fullName, number: subject.key.number,
            commentURL: commentURL, visibleFrom: Timestamp.date(event.visibleAt))
    }
}
