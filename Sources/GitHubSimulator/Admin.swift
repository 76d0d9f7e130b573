import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// `/_sim/…`: the simulator's own endpoints, so other processes (workers, dev mode, end-to-end tests) can read the
/// world's credentials, the ground truth, the request log and quota, and steer faults. Not recorded, never faulted.
extension GitHubSimulator {
    private static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamp.rfc3339(Timestamp.seconds(date)))
        }
        return encoder
    }

    private static func adminJSON(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let data = (try? encoder().encode(value)) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    private static func adminError(_ status: HTTPResponse.Status, _ message: String) -> Response {
        adminJSON(status, ["message": message])
    }

    struct RequestsPage: Encodable {
        /// Requests recorded since the simulator started (including forgotten ones).
        var total: Int
        /// Index of the first request in `requests`; pass `total` back as `after` to read only new ones.
        var first: Int
        var hosts: [String]
        var requests: [RecordedRequest]
    }

    struct QuotaAnswer: Encodable {
        var login: String
        var limit: Int
        var used: Int
        var remaining: Int
        var reset: Int64
    }

    func adminResponse(to request: inout Request) async throws -> Response {
        let query = parseQuery(request.uri.query)
        let path = request.uri.path
        switch (request.method, path) {
        case (.get, "/_sim/users"):
            return Self.adminJSON(.ok, users)
        case (.get, "/_sim/truth"):
            guard let login = query["login"] else { return Self.adminError(.badRequest, "login is required") }
            let from =
                query["from"].flatMap(Timestamp.parseRFC3339).map(Timestamp.date) ?? Date(timeIntervalSince1970: 0)
            let to = query["to"].flatMap(Timestamp.parseRFC3339).map(Timestamp.date) ?? Date()
            if query["from"] != nil && Timestamp.parseRFC3339(query["from"] ?? "") == nil
                || query["to"] != nil && Timestamp.parseRFC3339(query["to"] ?? "") == nil
            {
                return Self.adminError(
                    .badRequest, "from and to must be RFC 3339 timestamps such as 2026-12-01T04:05:00Z")
            }
            do {
                if query["polled"] == "true" {
                    return Self.adminJSON(.ok, try polledTruth(login: login, from: from, to: to))
                }
                return Self.adminJSON(.ok, try truth(login: login, from: from, to: to))
            } catch {
                return Self.adminError(.notFound, "\(error)")
            }
        case (.get, "/_sim/requests"):
            let after = query["after"].flatMap(Int.init) ?? 0
            let page = log.withLock { log -> RequestsPage in
                let total = log.dropped + log.entries.count
                let first = max(after, log.dropped)
                let slice = first < total ? Array(log.entries[(first - log.dropped)...]) : []
                return RequestsPage(total: total, first: first, hosts: log.hosts.sorted(), requests: slice)
            }
            return Self.adminJSON(.ok, page)
        case (.get, "/_sim/quota"):
            guard let login = query["login"] else { return Self.adminError(.badRequest, "login is required") }
            do {
                let quota = try quota(login: login)
                return Self.adminJSON(
                    .ok,
                    QuotaAnswer(
                        login: login, limit: quota.limit, used: quota.used, remaining: quota.remaining,
                        reset: quota.reset))
            } catch {
                return Self.adminError(.notFound, "\(error)")
            }
        case (.post, "/_sim/expire"):
            guard let login = query["login"] else { return Self.adminError(.badRequest, "login is required") }
            do {
                try expireToken(login: login)
                return Response(status: .noContent)
            } catch {
                return Self.adminError(.notFound, "\(error)")
            }
        case (.post, "/_sim/reconnect"):
            // A person connected the account again elsewhere: the pair the deployment holds stops working (refresh
            // token too), so its next sync ends in needs_reauth; the answer is the new pair, to re-add the account.
            guard let login = query["login"] else { return Self.adminError(.badRequest, "login is required") }
            do {
                return Self.adminJSON(.ok, try reconnect(login: login))
            } catch {
                return Self.adminError(.notFound, "\(error)")
            }
        case (.post, "/_sim/faults"):
            let count = query["count"].flatMap(Int.init) ?? 1
            let retryAfter = query["retry_after"].flatMap(Int.init) ?? configuration.secondaryLimitRetryAfter
            let fault: Fault
            switch query["fault"] ?? "" {
            case "serverError": fault = .serverError
            case "serviceUnavailable": fault = .serviceUnavailable
            case "secondaryLimit": fault = .secondaryLimit(retryAfter: retryAfter)
            case "secondaryLimitWithoutRetryAfter": fault = .secondaryLimitWithoutRetryAfter
            case "tooManyRequests": fault = .tooManyRequests(retryAfter: retryAfter)
            case "malformedJSON": fault = .malformedJSON
            case "drop": fault = .drop
            case "rateLimited": fault = .rateLimited
            case "unauthorized": fault = .unauthorized
            case "graphQLRateLimited": fault = .graphQLRateLimited
            default:
                return Self.adminError(
                    .badRequest,
                    "fault must be one of serverError, serviceUnavailable, secondaryLimit, "
                        + "secondaryLimitWithoutRetryAfter, tooManyRequests, malformedJSON, drop, rateLimited, "
                        + "unauthorized, graphQLRateLimited"
                )
            }
            injectFault(fault, count: count, pathPrefix: query["path_prefix"])
            return Response(status: .noContent)
        case (.delete, "/_sim/faults"):
            clearFaults()
            return Response(status: .noContent)
        default:
            return Self.adminError(
                .notFound,
                "unknown admin endpoint; try GET /_sim/users, /_sim/truth?login=&from=&to=[&polled=true], /_sim/requests?after=N, "
                    + "/_sim/quota?login=, POST /_sim/expire?login=, POST /_sim/reconnect?login=, "
                    + "POST /_sim/faults?fault=&count=")
        }
    }
}
