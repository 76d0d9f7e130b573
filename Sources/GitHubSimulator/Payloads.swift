import Crypto
import Foundation

/// Encodes a value as `null` when absent, as GitHub does, instead of leaving the key out.
struct Nullable<Wrapped: Encodable & Sendable>: Encodable, Sendable {
    var value: Wrapped?

    init(_ value: Wrapped?) { self.value = value }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value { try container.encode(value) } else { try container.encodeNil() }
    }
}

struct SimpleUserJSON: Encodable, Sendable {
    var login: String
    var id: Int
    var node_id: String
    var avatar_url: String
    var gravatar_id = ""
    var url: String
    var html_url: String
    var followers_url: String
    var following_url: String
    var gists_url: String
    var starred_url: String
    var subscriptions_url: String
    var organizations_url: String
    var repos_url: String
    var events_url: String
    var received_events_url: String
    var type: String
    var site_admin = false
}

/// `GET /user` and `GET /users/{u}`: the simple user's fields and the profile's, in one JSON object.
struct PrivateUserJSON: Encodable, Sendable {
    var user: SimpleUserJSON
    var profile: Profile

    /// Both parts write into the same object, so the user's fields are declared and filled once.
    func encode(to encoder: any Encoder) throws {
        try user.encode(to: encoder)
        try profile.encode(to: encoder)
    }

    struct Profile: Encodable, Sendable {
        var name: String
        var company: Nullable<String> = .init(nil)
        var blog = ""
        var location: Nullable<String> = .init(nil)
        var email: Nullable<String> = .init(nil)
        var hireable: Nullable<Bool> = .init(nil)
        var bio: Nullable<String> = .init(nil)
        var public_repos = 3
        var public_gists = 0
        var followers = 7
        var following = 3
        var created_at = "2020-01-01T00:00:00Z"
        var updated_at = "2026-01-01T00:00:00Z"
        var private_gists: Int?
        var total_private_repos: Int?
        var owned_private_repos: Int?
        var disk_usage: Int?
        var collaborators: Int?
        var two_factor_authentication: Bool?
        var plan: Plan?

        struct Plan: Encodable, Sendable {
            var name = "free"
            var space = 976_562_499
            var private_repos = 10_000
            var collaborators = 0
        }
    }
}

/// A repository with every `*_url` of GitHub's minimal-repository shape, so a strict decoder sees real keys.
struct RepositoryJSON: Encodable, Sendable {
    var id: Int
    var node_id: String
    var name: String
    var full_name: String
    var owner: SimpleUserJSON
    var html_url: String
    var description: String
    var url: String
    /// `*_url` templates, written as top-level keys.
    var links: [(String, String)]

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static let templates: [(String, String)] = [
        ("archive_url", "/{archive_format}{/ref}"), ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"), ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"), ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"), ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"), ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"), ("downloads_url", "/downloads"), ("events_url", "/events"),
        ("forks_url", "/forks"), ("git_commits_url", "/git/commits{/sha}"), ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"), ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"), ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"), ("languages_url", "/languages"), ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"), ("notifications_url", "/notifications{?since,all,participating}"),
        ("pulls_url", "/pulls{/number}"), ("releases_url", "/releases{/id}"), ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"), ("subscribers_url", "/subscribers"), ("subscription_url", "/subscription"),
        ("tags_url", "/tags"), ("teams_url", "/teams"), ("trees_url", "/git/trees{/sha}"),
    ]

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(id, forKey: Key("id"))
        try container.encode(node_id, forKey: Key("node_id"))
        try container.encode(name, forKey: Key("name"))
        try container.encode(full_name, forKey: Key("full_name"))
        try container.encode(owner, forKey: Key("owner"))
        try container.encode(false, forKey: Key("private"))
        try container.encode(html_url, forKey: Key("html_url"))
        try container.encode(description, forKey: Key("description"))
        try container.encode(false, forKey: Key("fork"))
        try container.encode(url, forKey: Key("url"))
        for (key, value) in links { try container.encode(value, forKey: Key(key)) }
    }
}

struct ThreadJSON: Encodable, Sendable {
    var id: String
    var repository: RepositoryJSON
    var subject: SubjectJSON
    var reason: String
    var unread = true
    var updated_at: String
    var last_read_at: Nullable<String> = .init(nil)
    var url: String
    var subscription_url: String

    struct SubjectJSON: Encodable, Sendable {
        var title: String
        var url: Nullable<String>
        var latest_comment_url: Nullable<String>
        var type: String
    }
}

struct LinkJSON: Encodable, Sendable {
    var url: String
    var html_url: String
    var diff_url: String
    var patch_url: String
}

struct IssueJSON: Encodable, Sendable {
    var id: Int64
    var node_id: String
    var url: String
    var repository_url: String
    var labels_url: String
    var comments_url: String
    var events_url: String
    var html_url: String
    var number: Int
    var state: String
    var state_reason: Nullable<String>
    var title: String
    var body: String
    var user: SimpleUserJSON
    var labels: [String] = []
    var assignee: Nullable<SimpleUserJSON> = .init(nil)
    var assignees: [SimpleUserJSON] = []
    var milestone: Nullable<String> = .init(nil)
    var locked = false
    var comments: Int
    var pull_request: LinkJSON?
    var closed_at: Nullable<String>
    var closed_by: Nullable<SimpleUserJSON>
    var created_at: String
    var updated_at: String
    var author_association: String
}

struct BranchJSON: Encodable, Sendable {
    var label: String
    var ref: String
    var sha: String
    var user: SimpleUserJSON
    var repo: RepositoryJSON
}

struct PullRequestJSON: Encodable, Sendable {
    var url: String
    var id: Int64
    var node_id: String
    var html_url: String
    var diff_url: String
    var patch_url: String
    var issue_url: String
    var commits_url: String
    var review_comments_url: String
    var review_comment_url: String
    var comments_url: String
    var statuses_url: String
    var number: Int
    var state: String
    var locked = false
    var title: String
    var user: SimpleUserJSON
    var body: String
    var labels: [String] = []
    var created_at: String
    var updated_at: String
    var closed_at: Nullable<String>
    var merged_at: Nullable<String>
    var merge_commit_sha: Nullable<String>
    var assignee: Nullable<SimpleUserJSON> = .init(nil)
    var assignees: [SimpleUserJSON] = []
    var requested_reviewers: [SimpleUserJSON] = []
    var requested_teams: [String] = []
    var milestone: Nullable<String> = .init(nil)
    var head: BranchJSON
    var base: BranchJSON
    var _links: Links
    var author_association: String
    var auto_merge: Nullable<String> = .init(nil)
    var draft = false
    var merged: Bool
    var mergeable: Nullable<Bool> = .init(nil)
    var rebaseable: Nullable<Bool> = .init(nil)
    var mergeable_state = "clean"
    var merged_by: Nullable<SimpleUserJSON>
    var maintainer_can_modify = false
    var comments: Int
    var review_comments: Int
    var commits = 1
    var additions = 10
    var deletions = 2
    var changed_files = 1

    struct Link: Encodable, Sendable { var href: String }

    struct Links: Encodable, Sendable {
        var `self`: Link
        var html: Link
        var issue: Link
        var comments: Link
        var review_comments: Link
        var review_comment: Link
        var commits: Link
        var statuses: Link
    }
}

struct IssueCommentJSON: Encodable, Sendable {
    var id: Int64
    var node_id: String
    var url: String
    var html_url: String
    var body: String
    var user: SimpleUserJSON
    var created_at: String
    var updated_at: String
    var issue_url: String
    var author_association: String
}

struct ReviewCommentJSON: Encodable, Sendable {
    var url: String
    var pull_request_review_id: Int64
    var id: Int64
    var node_id: String
    var diff_hunk = "@@ -1,3 +1,4 @@"
    var path: String
    var position = 1
    var original_position = 1
    var commit_id: String
    var original_commit_id: String
    var user: SimpleUserJSON
    var body: String
    var created_at: String
    var updated_at: String
    var html_url: String
    var pull_request_url: String
    var author_association: String
    var line = 2
    var side = "RIGHT"
}

struct EventJSON: Encodable, Sendable {
    var id: String
    var type: String
    var actor: Actor
    var repo: RepoRef
    var payload: Payload
    var `public` = true
    var created_at: String

    struct Actor: Encodable, Sendable {
        var id: Int
        var login: String
        var display_login: String
        var gravatar_id = ""
        var url: String
        var avatar_url: String
    }

    struct RepoRef: Encodable, Sendable {
        var id: Int
        var name: String
        var url: String
    }

    struct Payload: Encodable, Sendable {
        var action: String?
        var number: Int?
        var issue: IssueJSON?
        var pull_request: PullRequest?
        var comment: Comment?
        var review: ReviewJSON?
        var discussion: DiscussionEventJSON?
        var repository_id: Int?
        var push_id: Int64?
        var ref: String?
        var head: String?
        var before: String?
    }

    /// `payload.pull_request`: the whole pull request (before 2025-10-07, and still in review comment events), or
    /// since then in `PullRequestEvent` and `PullRequestReviewEvent` only its reference.
    enum PullRequest: Encodable, Sendable {
        case full(PullRequestJSON)
        case trimmed(TrimmedPullRequestJSON)

        func encode(to encoder: any Encoder) throws {
            switch self {
            case .full(let value): try value.encode(to: encoder)
            case .trimmed(let value): try value.encode(to: encoder)
            }
        }
    }

    /// Issue comments and review comments share the `comment` key.
    enum Comment: Encodable, Sendable {
        case issue(IssueCommentJSON)
        case review(ReviewCommentJSON)

        func encode(to encoder: any Encoder) throws {
            switch self {
            case .issue(let value): try value.encode(to: encoder)
            case .review(let value): try value.encode(to: encoder)
            }
        }
    }
}

/// `payload.discussion` of a `DiscussionEvent`.
struct DiscussionEventJSON: Encodable, Sendable {
    var number: Int
    var title: String
    var body: String
    var html_url: String
    var user: SimpleUserJSON
    var created_at: String
}

/// `payload.review` of a `PullRequestReviewEvent`.
struct ReviewJSON: Encodable, Sendable {
    var id: Int64
    var node_id: String
    var user: SimpleUserJSON
    var body: String
    var state: String
    var html_url: String
    var pull_request_url: String
    var submitted_at: String
    var author_association: String
}

/// What GitHub's event payloads have held of a pull request since 2025-10-07: `url`, `id`, `number`, `head`, `base`.
struct TrimmedPullRequestJSON: Encodable, Sendable {
    struct Branch: Encodable, Sendable {
        var ref: String
        var sha: String
        var repo: EventJSON.RepoRef
    }

    var url: String
    var id: Int64
    var number: Int
    var head: Branch
    var base: Branch
}

struct ErrorJSON: Encodable, Sendable {
    var message: String
    var documentation_url: String
    var status: String?
}

enum JSON {
    static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        // Our own structs always encode; a failure here would be a programming error in this file.
        return (try? Array(encoder.encode(value))) ?? Array("{}".utf8)
    }

    /// A strong ETag over some bytes.
    static func etag(_ bytes: [UInt8]) -> String {
        let digest = SHA256.hash(data: bytes)
        return "\"" + digest.prefix(16).map { hexByte($0) }.joined() + "\""
    }

    static func etag(_ text: String) -> String { etag(Array(text.utf8)) }

    static func hexByte(_ byte: UInt8) -> String {
        let digits: [Character] = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { hexByte($0) }.joined() }
}

// MARK: World objects to JSON

extension WorldState {
    private func nodeId(_ prefix: String, _ id: Int64) -> String {
        Data("\(prefix)\(id)".utf8).base64EncodedString()
    }

    func userJSON(_ person: Person) -> SimpleUserJSON {
        SimpleUserJSON(
            login: person.login, id: person.id,
            node_id: nodeId(person.isOrganization ? "04:Organization" : "04:User", Int64(person.id)),
            avatar_url: "https://avatars.githubusercontent.com/u/\(person.id)?v=4",
            url: "\(baseURL)/users/\(person.login)", html_url: "\(params.htmlBase)/\(person.login)",
            followers_url: "\(baseURL)/users/\(person.login)/followers",
            following_url: "\(baseURL)/users/\(person.login)/following{/other_user}",
            gists_url: "\(baseURL)/users/\(person.login)/gists{/gist_id}",
            starred_url: "\(baseURL)/users/\(person.login)/starred{/owner}{/repo}",
            subscriptions_url: "\(baseURL)/users/\(person.login)/subscriptions",
            organizations_url: "\(baseURL)/users/\(person.login)/orgs",
            repos_url: "\(baseURL)/users/\(person.login)/repos",
            events_url: "\(baseURL)/users/\(person.login)/events{/privacy}",
            received_events_url: "\(baseURL)/users/\(person.login)/received_events",
            type: person.isOrganization ? "Organization" : "User")
    }

    func privateUserJSON(_ person: Person, authenticated: Bool) -> PrivateUserJSON {
        var profile = PrivateUserJSON.Profile(
            name: "Simulated \(person.login.prefix(1).uppercased())\(person.login.dropFirst())")
        if authenticated {
            profile.private_gists = 0
            profile.total_private_repos = 0
            profile.owned_private_repos = 0
            profile.disk_usage = 1_024
            profile.collaborators = 0
            profile.two_factor_authentication = true
            profile.plan = .init()
        }
        return PrivateUserJSON(user: userJSON(person), profile: profile)
    }

    func repositoryJSON(_ index: Int) -> RepositoryJSON {
        let repo = repos[index]
        let api = "\(baseURL)/repos/\(repo.fullName)"
        return RepositoryJSON(
            id: repo.id, node_id: nodeId("010:Repository", Int64(repo.id)), name: repo.name, full_name: repo.fullName,
            owner: userJSON(repo.owner), html_url: "\(params.htmlBase)/\(repo.fullName)",
            description: "Simulated repository \(repo.name)", url: api,
            links: RepositoryJSON.templates.map { ($0.0, api + $0.1) })
    }

    func subjectHTML(_ subject: Subject) -> String {
        let repo = repos[subject.key.repo]
        return "\(params.htmlBase)/\(repo.fullName)/\(subject.isPullRequest ? "pull" : "issues")/\(subject.key.number)"
    }

    /// The API base for a path, honouring a test's hostile host.
    private func apiBase(foreignHost: String?) -> String {
        foreignHost.map { $0.contains("://") ? $0 : "http://\($0)" } ?? baseURL
    }

    func subjectAPIPath(_ key: SubjectKey, isPullRequest: Bool) -> String {
        "/repos/\(repos[key.repo].fullName)/\(isPullRequest ? "pulls" : "issues")/\(key.number)"
    }

    func commentAPIPath(_ comment: Comment) -> String {
        "/repos/\(repos[comment.subject.repo].fullName)/\(comment.isReview ? "pulls" : "issues")/comments/\(comment.id)"
    }

    func reviewHTML(_ review: Review, on subject: Subject) -> String {
        "\(subjectHTML(subject))#pullrequestreview-\(review.id)"
    }

    func commentHTML(_ comment: Comment) -> String {
        let repo = repos[comment.subject.repo]
        let isPull = subjects[comment.subject]?.isPullRequest ?? comment.isReview
        let anchor = comment.isReview ? "discussion_r\(comment.id)" : "issuecomment-\(comment.id)"
        return "\(params.htmlBase)/\(repo.fullName)/\(isPull ? "pull" : "issues")/\(comment.subject.number)#\(anchor)"
    }

    private func association(_ person: Person, repo: Int) -> String {
        person.login == repos[repo].owner.login ? "OWNER" : "CONTRIBUTOR"
    }

    func issueJSON(_ subject: Subject) -> IssueJSON {
        let repo = repos[subject.key.repo]
        let api = "\(baseURL)/repos/\(repo.fullName)/issues/\(subject.key.number)"
        let html = "\(params.htmlBase)/\(repo.fullName)"
        let pull =
            subject.isPullRequest
            ? LinkJSON(
                url: "\(baseURL)/repos/\(repo.fullName)/pulls/\(subject.key.number)",
                html_url: "\(html)/pull/\(subject.key.number)", diff_url: "\(html)/pull/\(subject.key.number).diff",
                patch_url: "\(html)/pull/\(subject.key.number).patch") : nil
        let stateReason: String? = subject.state == "closed" && !subject.isPullRequest ? "completed" : nil
        return IssueJSON(
            id: IdSpace.issue + subject.seq, node_id: nodeId("05:Issue", IdSpace.issue + subject.seq), url: api,
            repository_url: "\(baseURL)/repos/\(repo.fullName)", labels_url: "\(api)/labels{/name}",
            comments_url: "\(api)/comments", events_url: "\(api)/events", html_url: subjectHTML(subject),
            number: subject.key.number, state: subject.state, state_reason: .init(stateReason), title: subject.title,
            body: subject.body, user: userJSON(subject.author), comments: subject.comments, pull_request: pull,
            closed_at: .init(subject.closedAt.map(Timestamp.rfc3339)), closed_by: .init(subject.closedBy.map(userJSON)),
            created_at: Timestamp.rfc3339(subject.createdAt),
            updated_at: Timestamp.rfc3339(subject.updatedAt),
            author_association: association(subject.author, repo: repo.index))
    }

    private func sha(_ seed: Int64, _ salt: UInt64) -> String {
        var rng = SeededGenerator(params.seed, UInt64(bitPattern: seed), salt)
        return (0..<5).map { _ in String(format: "%08x", UInt32(truncatingIfNeeded: rng.next())) }.joined()
    }

    func pullJSON(_ subject: Subject) -> PullRequestJSON {
        let repo = repos[subject.key.repo]
        let api = "\(baseURL)/repos/\(repo.fullName)/pulls/\(subject.key.number)"
        let html = "\(params.htmlBase)/\(repo.fullName)/pull/\(subject.key.number)"
        let repoJSON = repositoryJSON(repo.index)
        let head = BranchJSON(
            label: "\(repo.owner.login):topic-\(subject.key.number)", ref: "topic-\(subject.key.number)",
            sha: sha(subject.seq, 0x4EAD), user: userJSON(subject.author), repo: repoJSON)
        let base = BranchJSON(
            label: "\(repo.owner.login):main", ref: "main", sha: sha(subject.seq, 0xBA5E), user: userJSON(repo.owner),
            repo: repoJSON)
        let mergedAt = subject.merged ? subject.closedAt : nil
        let issueURL = "\(baseURL)/repos/\(repo.fullName)/issues/\(subject.key.number)"
        let statusesURL = "\(baseURL)/repos/\(repo.fullName)/statuses/\(head.sha)"
        let links = PullRequestJSON.Links(
            self: .init(href: api), html: .init(href: html), issue: .init(href: issueURL),
            comments: .init(href: "\(issueURL)/comments"), review_comments: .init(href: "\(api)/comments"),
            review_comment: .init(href: "\(baseURL)/repos/\(repo.fullName)/pulls/comments{/number}"),
            commits: .init(href: "\(api)/commits"), statuses: .init(href: statusesURL))
        return PullRequestJSON(
            url: api, id: IdSpace.pull + subject.seq, node_id: nodeId("011:PullRequest", IdSpace.pull + subject.seq),
            html_url: html, diff_url: "\(html).diff", patch_url: "\(html).patch", issue_url: issueURL,
            commits_url: "\(api)/commits", review_comments_url: "\(api)/comments",
            review_comment_url: "\(baseURL)/repos/\(repo.fullName)/pulls/comments{/number}",
            comments_url: "\(issueURL)/comments", statuses_url: statusesURL, number: subject.key.number,
            state: subject.state, title: subject.title, user: userJSON(subject.author), body: subject.body,
            created_at: Timestamp.rfc3339(subject.createdAt), updated_at: Timestamp.rfc3339(subject.updatedAt),
            closed_at: .init(subject.closedAt.map(Timestamp.rfc3339)),
            merged_at: .init(mergedAt.map(Timestamp.rfc3339)),
            merge_commit_sha: .init(subject.merged ? sha(subject.seq, 0x3E6E) : nil), head: head, base: base,
            _links: links, author_association: association(subject.author, repo: repo.index), merged: subject.merged,
            merged_by: .init(subject.merged ? userJSON(subject.closedBy ?? repo.owner) : nil),
            comments: subject.comments, review_comments: subject.reviewComments)
    }

    /// A commit id, seeded by `seq`.
    func commitSHA(_ seq: Int64) -> String { sha(seq, 0xC033) }

    /// The pull request as today's event payloads reference it.
    func trimmedPullJSON(_ subject: Subject) -> TrimmedPullRequestJSON {
        let repo = repos[subject.key.repo]
        let repoRef = EventJSON.RepoRef(id: repo.id, name: repo.fullName, url: "\(baseURL)/repos/\(repo.fullName)")
        return TrimmedPullRequestJSON(
            url: "\(baseURL)/repos/\(repo.fullName)/pulls/\(subject.key.number)", id: IdSpace.pull + subject.seq,
            number: subject.key.number,
            head: .init(ref: "topic-\(subject.key.number)", sha: sha(subject.seq, 0x4EAD), repo: repoRef),
            base: .init(ref: "main", sha: sha(subject.seq, 0xBA5E), repo: repoRef))
    }

    func issueCommentJSON(_ comment: Comment) -> IssueCommentJSON {
        let repo = repos[comment.subject.repo]
        return IssueCommentJSON(
            id: comment.id, node_id: nodeId("012:IssueComment", comment.id), url: baseURL + commentAPIPath(comment),
            html_url: commentHTML(comment), body: comment.body, user: userJSON(comment.author),
            created_at: Timestamp.rfc3339(comment.createdAt), updated_at: Timestamp.rfc3339(comment.createdAt),
            issue_url: "\(baseURL)/repos/\(repo.fullName)/issues/\(comment.subject.number)",
            author_association: association(comment.author, repo: repo.index))
    }

    func reviewCommentJSON(_ comment: Comment) -> ReviewCommentJSON {
        let repo = repos[comment.subject.repo]
        let commit = sha(comment.id, 0xC0)
        return ReviewCommentJSON(
            url: baseURL + commentAPIPath(comment), pull_request_review_id: comment.id + 7, id: comment.id,
            node_id: nodeId("024:PullRequestReviewComment", comment.id),
            path: Vocabulary.files[Int(comment.id % Int64(Vocabulary.files.count))], commit_id: commit,
            original_commit_id: commit, user: userJSON(comment.author), body: comment.body,
            created_at: Timestamp.rfc3339(comment.createdAt), updated_at: Timestamp.rfc3339(comment.createdAt),
            html_url: commentHTML(comment),
            pull_request_url: "\(baseURL)/repos/\(repo.fullName)/pulls/\(comment.subject.number)",
            author_association: association(comment.author, repo: repo.index))
    }

    /// The comment `latest_comment_url` names when `now` is polled: as on GitHub, the subject's newest comment, not the
    /// one that made the thread's current version (a reply the user wrote after it, which notifies nobody, moves it).
    func latestCommentId(_ thread: NotificationThread, now: Int64) -> Int64? {
        guard case .comment(let id) = thread.latest else { return nil }
        guard let key = thread.subject, let subject = subjects[key] else { return id }
        return subject.commentIds.last { (comments[$0]?.createdAt ?? .max) <= now } ?? id
    }

    /// Whether the thread's JSON can be cached: not while its `latest_comment_url` may move with new comments.
    func threadJSONIsStable(_ thread: NotificationThread) -> Bool {
        if case .comment = thread.latest, thread.subject != nil { return false }
        return true
    }

    func threadJSON(_ thread: NotificationThread, now: Int64 = .max) -> ThreadJSON {
        let repo = repos[thread.repo]
        let base = apiBase(foreignHost: thread.foreignHost)
        var url: String?
        var latest: String?
        switch thread.subjectType {
        case "Issue", "PullRequest":
            if let key = thread.subject {
                url = base + subjectAPIPath(key, isPullRequest: thread.subjectType == "PullRequest")
            }
        case "Release":
            url = "\(base)/repos/\(repo.fullName)/releases/\(thread.releaseId ?? 0)"
        case "Commit":
            url = "\(base)/repos/\(repo.fullName)/commits/\(thread.commitSHA ?? "")"
        default:
            url = nil
        }
        switch thread.latest {
        case .none: latest = nil
        case .subject: latest = url
        case .comment:
            // A discussion's comments have no REST URL: GitHub sends null, as for the discussion itself.
            latest =
                thread.subjectType == "Discussion"
                ? nil : latestCommentId(thread, now: now).flatMap { comments[$0] }.map { base + commentAPIPath($0) }
        }
        return ThreadJSON(
            id: String(thread.id), repository: repositoryJSON(thread.repo),
            subject: .init(
                title: thread.title, url: .init(url), latest_comment_url: .init(latest), type: thread.subjectType),
            reason: thread.reason, updated_at: Timestamp.rfc3339(thread.updatedAt),
            url: "\(baseURL)/notifications/threads/\(thread.id)",
            subscription_url: "\(baseURL)/notifications/threads/\(thread.id)/subscription")
    }

    func eventJSON(_ event: UserEvent) -> EventJSON {
        let person = account(event.user).person
        let repo = repos[event.repo]
        var payload = EventJSON.Payload(action: event.action)
        switch event.type {
        case "IssuesEvent":
            payload.issue = event.subject.map(issueJSON)
        case "PullRequestEvent":
            payload.number = event.subject?.key.number
            payload.pull_request = event.subject.map {
                params.fullEventPayloads ? .full(pullJSON($0)) : .trimmed(trimmedPullJSON($0))
            }
        case "IssueCommentEvent":
            payload.issue = event.subject.map(issueJSON)
            payload.comment = event.comment.map { .issue(issueCommentJSON($0)) }
        case "PullRequestReviewCommentEvent":
            payload.pull_request = event.subject.map { .full(pullJSON($0)) }
            payload.comment = event.comment.map { .review(reviewCommentJSON($0)) }
        case "PullRequestReviewEvent":
            payload.pull_request = event.subject.map {
                params.fullEventPayloads ? .full(pullJSON($0)) : .trimmed(trimmedPullJSON($0))
            }
            if let review = event.review, let subject = event.subject {
                payload.review = ReviewJSON(
                    id: review.id, node_id: nodeId("017:PullRequestReview", review.id), user: userJSON(person),
                    body: review.body, state: review.state, html_url: reviewHTML(review, on: subject),
                    pull_request_url: "\(baseURL)\(subjectAPIPath(subject.key, isPullRequest: true))",
                    submitted_at: Timestamp.rfc3339(event.createdAt), author_association: "CONTRIBUTOR")
            }
        case "DiscussionEvent":
            if let key = event.discussion, let discussion = discussions[key] {
                payload.discussion = DiscussionEventJSON(
                    number: key.number, title: discussion.title, body: discussion.body,
                    html_url: "\(params.htmlBase)/\(repos[key.repo].fullName)/discussions/\(key.number)",
                    user: userJSON(discussion.author), created_at: Timestamp.rfc3339(discussion.createdAt))
            }
        case "PushEvent":
            payload.repository_id = repo.id
            payload.push_id = event.id + 11
            payload.ref = "refs/heads/main"
            payload.head = sha(event.id, 0x9054)
            payload.before = sha(event.id, 0xBEF0)
        default:
            break
        }
        return EventJSON(
            id: String(event.id), type: event.type,
            actor: .init(
                id: person.id, login: person.login, display_login: person.login,
                url: "\(baseURL)/users/\(person.login)",
                avatar_url: "https://avatars.githubusercontent.com/u/\(person.id)?v=4"),
            repo: .init(id: repo.id, name: repo.fullName, url: "\(baseURL)/repos/\(repo.fullName)"),
            payload: payload, created_at: Timestamp.rfc3339(event.createdAt))
    }
}
