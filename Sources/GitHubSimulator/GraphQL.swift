import Foundation
import Hummingbird
import Synchronization

/// `POST /graphql`: just enough of GitHub's GraphQL API to resolve a Discussion notification, whose REST
/// `subject.url` is null. The query text is not parsed: any query naming `discussions` gets
/// `repository(owner: $owner, name: $name).discussions(first: $first)`, newest update first, each with its last
/// ten comments (oldest first, as `comments(last: 10)` answers).
extension GitHubSimulator {
    private struct GraphQLRequest: Decodable {
        struct Variables: Decodable {
            var owner: String?
            var name: String?
            var first: Int?
        }

        var query: String
        var variables: Variables?
    }

    private struct Answer: Encodable {
        var data: DataField?
        var errors: [Message]?

        struct Message: Encodable {
            var message: String
            var type: String?
        }
        struct DataField: Encodable { var repository: Repository? }
        struct Repository: Encodable { var discussions: Connection<Node> }
        struct Connection<T: Encodable>: Encodable { var nodes: [T] }
        struct Author: Encodable { var login: String }
        struct Node: Encodable {
            var number: Int
            var title: String
            var url: String
            var body: String
            var updatedAt: String
            var author: Author
            var comments: Connection<CommentNode>
        }
        struct CommentNode: Encodable {
            var url: String
            var body: String
            var createdAt: String
            var author: Author
        }
    }

    func graphQL(request: inout Request, user: Int, now: Int64) async throws -> APIResponse {
        guard request.method == .post else { return .error(404, "Not Found") }
        let buffer = try await request.collectBody(upTo: 64 * 1024)
        guard let body = try? JSONDecoder().decode(GraphQLRequest.self, from: Data(buffer.readableBytesView)) else {
            return .error(400, "Problems parsing JSON")
        }
        guard body.query.contains("discussions"), let owner = body.variables?.owner, let name = body.variables?.name
        else {
            return .json(
                200, JSON.encode(Answer(errors: [.init(message: "the simulator serves only repository.discussions")])))
        }
        let first = min(max(1, body.variables?.first ?? 20), 100)
        let answer: Answer = world.withLock { world in
            world.materialize(user, now: now)
            guard let repo = world.repoByName["\(owner)/\(name)".lowercased()] else {
                return Answer(
                    data: .init(repository: nil),
                    errors: [
                        .init(
                            message: "Could not resolve to a Repository with the name '\(owner)/\(name)'.",
                            type: "NOT_FOUND")
                    ])
            }
            let fullName = world.repos[repo].fullName
            let nodes = world.discussions.values
                .filter { $0.key.repo == repo && $0.createdAt <= now }
                .map { discussion -> (Int64, Answer.Node) in
                    let page = "\(world.params.htmlBase)/\(fullName)/discussions/\(discussion.key.number)"
                    let shown = discussion.comments.compactMap { world.discussionComments[$0] }
                        .filter { $0.createdAt <= now }
                        .suffix(10)
                    let latest = shown.last
                    let updatedAt =
                        discussion.updatedAt <= now
                        ? discussion.updatedAt : max(discussion.createdAt, latest?.createdAt ?? discussion.createdAt)
                    let comments = shown.map {
                        Answer.CommentNode(
                            url: "\(page)#discussioncomment-\($0.id)", body: $0.body,
                            createdAt: Timestamp.rfc3339($0.createdAt), author: .init(login: $0.author.login))
                    }
                    return (
                        updatedAt,
                        Answer.Node(
                            number: discussion.key.number, title: discussion.title, url: page, body: discussion.body,
                            updatedAt: Timestamp.rfc3339(updatedAt), author: .init(login: discussion.author.login),
                            comments: .init(nodes: comments))
                    )
                }
                .sorted { ($0.0, $0.1.number) > ($1.0, $1.1.number) }
                .prefix(first)
                .map(\.1)
            return Answer(data: .init(repository: .init(discussions: .init(nodes: Array(nodes)))))
        }
        return .json(200, JSON.encode(answer))
    }
}
