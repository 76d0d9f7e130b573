/// The ground truth: what a correct poller of one account must produce, with the texts of issue 3.
///
/// Rules, in one place so tests and the GitHub integration can be checked against them:
/// - Notifications: kept reasons `assign`, `review_requested`, `mention`, `state_change`, `author`, `comment`,
///   `team_mention`; kept subject types `Issue` and `PullRequest` only. Threads whose subject URL a test moved to
///   another host are excluded (a correct client refuses to follow them). One activity per thread, for its
///   current `updated_at` (a thread changes only when a test calls `touchThread`).
/// - Actor and body come from the comment `latest_comment_url` names, otherwise from the issue or pull request.
/// - Events: `PullRequestEvent`/`IssuesEvent` with action `opened`, `IssueCommentEvent` and
///   `PullRequestReviewCommentEvent` with action `created`; every event in the window counts, also ones the
///   300-event cap hides by now.
/// - Window: `from ≤ time ≤ to`, and never later than now.
extension WorldState {
    static let keptReasons: Set<String> = [
        "assign", "review_requested", "mention", "state_change", "author", "comment", "team_mention",
    ]

    func truth(user: Int, from: Int64, to: Int64) -> [ExpectedActivity] {
        let account = account(user)
        let username = account.person.login
        var result: [ExpectedActivity] = []
        let low = account.threadOrder.lowerBound(OrderKey(time: from, id: Int64.min))
        for key in account.threadOrder[low...] where key.time <= to {
            if let thread = account.threads[key.id], let activity = expected(thread, username: username) {
                result.append(activity)
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

    func expected(_ thread: NotificationThread, username: String) -> ExpectedActivity? {
        guard Self.keptReasons.contains(thread.reason), thread.foreignHost == nil,
            thread.subjectType == "Issue" || thread.subjectType == "PullRequest",
            let key = thread.subject, let subject = subjects[key]
        else { return nil }
        let repo = repos[key.repo].fullName
        let isPR = thread.subjectType == "PullRequest"
        var actor = subject.author.login
        var body = subject.body
        if case .comment(let id) = thread.latest, let comment = comments[id] {
            actor = comment.author.login
            body = comment.body
        }
        let number = key.number
        let title = subject.title
        let text: String
        switch thread.reason {
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
        let updatedAt = Timestamp.rfc3339(thread.updatedAt)
        return ExpectedActivity(
            id: "github:notification:\(thread.id):\(updatedAt)", kind: thread.reason,
            occurredAt: Timestamp.date(thread.updatedAt), text: text, sourceURL: subjectHTML(subject), repo: repo,
            number: number)
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
        case ("IssueCommentEvent", "created"), ("PullRequestReviewCommentEvent", "created"):
            let isPR = subject.isPullRequest
            kind = isPR ? "pr_comment" : "issue_comment"
            text = "\(username) commented on \(isPR ? "PR" : "issue") #\(subject.key.number): \(subject.title)"
        default:
            return nil
        }
        return ExpectedActivity(
            id: "github:event:\(event.id)", kind: kind, occurredAt: Timestamp.date(event.createdAt), text: text,
            sourceURL: subjectHTML(subject), repo: repos[subject.key.repo].fullName, number: subject.key.number)
    }
}
