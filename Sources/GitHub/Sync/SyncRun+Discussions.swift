import Foundation
import IntegrationCatalog
import Logging
import SyncModel

/// Discussion notifications: their pages resolved through GraphQL, one query per repository.
extension SyncRun {
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
    func lookUpDiscussions(repo: String) async -> (DiscussionLookup, GitHubError?) {
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

    func discussionActivity(_ item: PendingNotification, lookup: DiscussionLookup) -> ItemResult {
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
    func discussionActivity(_ item: PendingNotification, node: DiscussionNode?) -> Activity {
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
}
