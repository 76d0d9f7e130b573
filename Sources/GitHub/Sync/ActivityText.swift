import Foundation

/// The activity texts, word for word as the reference integration writes them (issue 3 is the authority), so
/// a knowledge graph fed by either reads the same.
enum ActivityText {
    /// Notification reasons that become activities; others (subscribed, ci_activity, manual, …) are noise.
    static let keptReasons: Set<String> = [
        "assign", "review_requested", "mention", "state_change", "author", "comment", "team_mention",
    ]

    /// Reasons whose activity names the person who acted (the author of the comment `latest_comment_url` names),
    /// and carries that comment's permalink; the others name the subject's author.
    static let actorReasons: Set<String> = ["mention", "comment", "state_change"]

    /// The subject types that are issues or pull requests. Discussions have texts of their own
    /// (``discussion(reason:username:repo:number:title:actor:body:)``), Releases and Commits the generic one
    /// (``otherSubject(username:repo:type:title:)``); others (CheckSuite, …) are skipped: the texts only make sense for
    /// conversations, and calling a release a PR would be wrong.
    static func isPullRequest(subjectType: String) -> Bool? {
        switch subjectType {
        case "Issue": false
        case "PullRequest": true
        default: nil
        }
    }

    /// Release and Commit notifications have no conversation to quote: what the notification says, in the generic
    /// shape the reference uses for `author` and `team_mention`, with the subject's kind and title.
    static func otherSubject(username: String, repo: String, type: String, title: String) -> String {
        "GitHub notification for \(username) in \(repo) \(type == "Release" ? "release" : "commit"): \(title)"
    }

    struct NotificationFacts {
        var reason: String
        var isPullRequest: Bool
        var username: String
        var repo: String
        var number: Int
        var title: String
        var state: String?
        var actor: String
        var body: String
    }

    static func notification(_ facts: NotificationFacts) -> String? {
        let capitalKind = facts.isPullRequest ? "PR" : "Issue"
        let kind = facts.isPullRequest ? "PR" : "issue"
        let f = facts
        switch f.reason {
        case "assign":
            return "\(capitalKind) #\(f.number) assigned to \(f.username) in \(f.repo): \(f.title)"
        case "review_requested":
            return "\(f.username) requested to review PR #\(f.number) in \(f.repo): \(f.title)"
        case "mention":
            return "\(f.actor) mentioned \(f.username) in \(f.repo) \(kind) #\(f.number): \(f.body)"
        case "comment":
            return "\(f.actor) commented on \(kind) #\(f.number) in \(f.repo): \(f.body)"
        case "state_change":
            // Without a state the reference leaves out `to {state}` and keeps both spaces: "state  in".
            let target = f.state.map { "to \($0)" } ?? ""
            return "\(f.actor) changed \(kind) #\(f.number) state \(target) in \(f.repo): \(f.title)"
        case "author", "team_mention":
            return "GitHub notification for \(f.username) in \(f.repo)"
        default:
            return nil
        }
    }

    /// A Discussion notification's text, in the reference's shapes with `discussion` for the kind. Without a
    /// resolved discussion (`number` nil) it says what the notification itself says.
    static func discussion(
        reason: String, username: String, repo: String, number: Int?, title: String, actor: String, body: String
    ) -> String {
        guard let number else { return "GitHub notification for \(username) in \(repo) discussion: \(title)" }
        switch reason {
        case "mention": return "\(actor) mentioned \(username) in \(repo) discussion #\(number): \(body)"
        case "comment": return "\(actor) commented on discussion #\(number) in \(repo): \(body)"
        case "state_change": return "\(actor) changed discussion #\(number) state  in \(repo): \(title)"
        default: return "GitHub notification for \(username) in \(repo)"
        }
    }

    /// The user-event kinds that become activities, with their `kind`.
    static func eventKind(_ event: GitHubEvent) -> String? {
        let action = event.payload?.action
        switch event.type {
        case "PullRequestEvent" where action == "opened": return "pr_opened"
        case "IssuesEvent" where action == "opened":
            // GitHub reports opening a PR as PullRequestEvent; an IssuesEvent is an issue.
            return "issue_opened"
        case "IssueCommentEvent" where action == "created":
            return event.payload?.issue?.pull_request != nil ? "pr_comment" : "issue_comment"
        case "PullRequestReviewCommentEvent" where action == "created": return "pr_comment"
        // The user's own review (often with a body): told like their comments, linked to the review.
        case "PullRequestReviewEvent" where action == "created": return "pr_review"
        default: return nil
        }
    }

    static func event(kind: String, username: String, number: Int, title: String) -> String {
        switch kind {
        case "pr_opened": "\(username) created PR #\(number): \(title)"
        case "issue_opened": "\(username) created issue #\(number): \(title)"
        case "pr_comment": "\(username) commented on PR #\(number): \(title)"
        case "pr_review": "\(username) reviewed PR #\(number): \(title)"
        default: "\(username) commented on issue #\(number): \(title)"
        }
    }
}
