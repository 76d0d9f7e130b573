import Foundation

// The slices of GitHub's REST payloads the sync reads. Everything GitHub may omit or null is optional, and
// unknown fields are ignored, so new fields (or removed ones such as `assignee` under newer API versions) don't
// break decoding. Timestamps stay strings: notification ids embed `updated_at` exactly as GitHub sent it.

struct GitHubAccount: Decodable, Sendable, Hashable {
    var login: String
    var id: Int
    var name: String?
    var email: String?
    var type: String?
    var html_url: String?
}

struct GitHubRepositoryRef: Decodable, Sendable, Hashable {
    var id: Int?
    var name: String?
    var full_name: String
    var html_url: String?
    var `private`: Bool?
    var owner: GitHubAccountRef?
}

struct GitHubAccountRef: Decodable, Sendable, Hashable {
    var login: String
    var id: Int?
}

/// A notification thread (`GET /notifications`, `GET /notifications/threads/{id}`).
struct NotificationThread: Decodable, Sendable, Hashable {
    struct Subject: Decodable, Sendable, Hashable {
        var title: String?
        var url: String?
        var latest_comment_url: String?
        var type: String
    }

    var id: String
    var repository: GitHubRepositoryRef
    var subject: Subject
    var reason: String
    var unread: Bool?
    var updated_at: String
    var last_read_at: String?
    var url: String?
}

/// The parts of an issue or pull request (`/issues/{n}`, `/pulls/{n}`) that the texts use.
struct IssueOrPull: Decodable, Sendable, Hashable {
    struct PullRequestLink: Decodable, Sendable, Hashable {
        var url: String?
        var html_url: String?
    }

    var id: Int?
    var number: Int
    var title: String
    var state: String?
    var html_url: String?
    var url: String?
    var body: String?
    var user: GitHubAccountRef?
    var assignee: GitHubAccountRef?
    var assignees: [GitHubAccountRef]?
    var pull_request: PullRequestLink?
    var merged: Bool?
    var draft: Bool?
    var state_reason: String?
    var closed_at: String?
    var created_at: String?
    var updated_at: String?
    /// Who closed the issue (issues only) and who merged the pull request (pull requests only).
    var closed_by: GitHubAccountRef?
    var merged_by: GitHubAccountRef?
    /// How many issue comments and (pull requests only) review comments it has: whether its comment lists can hold a
    /// version of the thread that was not listed.
    var comments: Int?
    var review_comments: Int?
}

/// An issue comment or a pull-request review comment (`/issues/comments/{id}`, `/pulls/comments/{id}`).
struct GitHubComment: Decodable, Sendable, Hashable {
    var id: Int
    var body: String?
    var user: GitHubAccountRef?
    var html_url: String?
    var url: String?
    var created_at: String?
    var updated_at: String?
    var author_association: String?
    var path: String?
    var in_reply_to_id: Int?
}

/// One entry of `GET /users/{username}/events`. `payload` differs per `type`; only the kept types are read.
///
/// Since 2025-10-07 GitHub trims `pull_request` in `PullRequestEvent` and `PullRequestReviewEvent` to `url`, `id`,
/// `number`, `head` and `base`, and `PushEvent` has no `commits`: nothing here beyond the event's id and repository
/// is required, and a pull request's title and page come from `pull_request.url` when the payload lacks them.
struct GitHubEvent: Decodable, Sendable, Hashable {
    struct RepoRef: Decodable, Sendable, Hashable {
        var id: Int?
        var name: String
        var url: String?
    }

    /// `payload.pull_request`: the whole pull request in payloads recorded before 2025-10-07, only its reference
    /// (`url`, `id`, `number`, `head`, `base`) since.
    struct PullRequestRef: Decodable, Sendable, Hashable {
        var url: String?
        var id: Int?
        var number: Int?
        var title: String?
        var html_url: String?
        var user: GitHubAccountRef?
    }

    /// `payload.review` of a `PullRequestReviewEvent`.
    struct Review: Decodable, Sendable, Hashable {
        var id: Int?
        var state: String?
        var body: String?
        var html_url: String?
        var user: GitHubAccountRef?
    }

    /// `payload.discussion` of a `DiscussionEvent`.
    struct Discussion: Decodable, Sendable, Hashable {
        var number: Int?
        var title: String?
        var html_url: String?
    }

    struct Payload: Decodable, Sendable, Hashable {
        var action: String?
        var number: Int?
        var pull_request: PullRequestRef?
        var issue: IssueOrPull?
        var comment: GitHubComment?
        var review: Review?
        var discussion: Discussion?
    }

    var id: String
    var type: String?
    var actor: GitHubAccountRef?
    var repo: RepoRef
    var payload: Payload?
    var `public`: Bool?
    var created_at: String?
    var org: GitHubAccountRef?

    /// The event types GitHub documents (`docs.github.com/rest/using-the-rest-api/github-event-types`); any other
    /// is skipped and counted, never a reason to fail the page.
    static let knownTypes: Set<String> = [
        "CommitCommentEvent", "CreateEvent", "DeleteEvent", "DiscussionEvent", "ForkEvent", "GollumEvent",
        "IssueCommentEvent", "IssuesEvent", "MemberEvent", "PublicEvent", "PullRequestEvent",
        "PullRequestReviewEvent", "PullRequestReviewCommentEvent", "PullRequestReviewThreadEvent", "PushEvent",
        "ReleaseEvent", "SponsorshipEvent", "WatchEvent",
    ]
}

/// A page of `/users/{u}/events`, decoded item by item: one event that does not decode is counted and skipped, so
/// it can never fail the page (and with it every activity of the account and the page's ETag).
struct EventPage: Decodable, Sendable {
    var events: [GitHubEvent] = []
    /// Items that are not an event this decoder can read.
    var undecodable = 0

    /// Consumes one array element of any shape.
    private struct AnyItem: Decodable {
        init(from decoder: any Decoder) throws {}
    }

    init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        while !container.isAtEnd {
            if let event = try? container.decode(GitHubEvent.self) {
                events.append(event)
            } else {
                undecodable += 1
                _ = try container.decode(AnyItem.self)
            }
        }
    }
}

/// The `{message, errors?, documentation_url?}` body of GitHub's error responses.
struct GitHubErrorBody: Decodable, Sendable, Hashable {
    struct FieldError: Decodable, Sendable, Hashable {
        var resource: String?
        var code: String?
        var field: String?
        var message: String?
    }

    var message: String
    var errors: [FieldError]?
    var documentation_url: String?
}

/// `GET /rate_limit`.
struct RateLimitOverview: Decodable, Sendable, Hashable {
    struct Resource: Decodable, Sendable, Hashable {
        var limit: Int
        var used: Int
        var remaining: Int
        var reset: Int
    }

    var resources: [String: Resource]
    var rate: Resource?
}

/// `GET /search/issues`.
struct IssueSearchResult: Decodable, Sendable, Hashable {
    var total_count: Int
    var incomplete_results: Bool
    var items: [IssueOrPull]
}

/// What GitHub's OAuth token endpoint answers. Errors come back as HTTP 200 with `error` set.
struct OAuthTokenResponse: Decodable, Sendable {
    var access_token: String?
    var refresh_token: String?
    var token_type: String?
    var scope: String?
    var expires_in: Int?
    var error: String?
    var error_description: String?
}

/// The GraphQL answer to the `repository.discussions` query that resolves Discussion notifications.
struct DiscussionsAnswer: Decodable, Sendable {
    struct DataField: Decodable, Sendable { var repository: Repository? }
    struct Repository: Decodable, Sendable { var discussions: Nodes<DiscussionNode>? }
    struct ErrorMessage: Decodable, Sendable {
        var message: String?
        /// `NOT_FOUND`, `FORBIDDEN`, `RATE_LIMITED`, …
        var type: String?
    }

    var data: DataField?
    var errors: [ErrorMessage]?
}

struct Nodes<T: Decodable & Sendable & Hashable>: Decodable, Sendable, Hashable {
    var nodes: [T?]?
}

struct GraphQLActor: Decodable, Sendable, Hashable {
    var login: String
}

struct DiscussionNode: Decodable, Sendable, Hashable {
    struct Comment: Decodable, Sendable, Hashable {
        var url: String?
        var body: String?
        var createdAt: String?
        var author: GraphQLActor?
    }

    var number: Int
    var title: String
    var url: String?
    var body: String?
    var updatedAt: String?
    var author: GraphQLActor?
    var comments: Nodes<Comment>?
}
