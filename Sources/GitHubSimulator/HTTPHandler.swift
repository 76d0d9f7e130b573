import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// Request context that keeps the connection, so a "dropped connection" fault can close it without answering.
struct SimulatorRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

/// Thrown after closing a connection on purpose; Hummingbird's attempt to answer then fails quietly.
struct DroppedConnection: Error {}

/// What a route produced, before rate-limit headers and faults are applied.
struct APIResponse {
    var status: Int
    var body: ByteBuffer
    var headers: [(String, String)] = []
    var notModified = false
    /// False for answers GitHub does not charge: 304s, auth failures, limits.
    var countsAgainstQuota = true
    /// Activity ids (as the truth names them) of the thread versions or events this page holds.
    var served: [String] = []

    static func json(_ status: Int, _ bytes: [UInt8], headers: [(String, String)] = []) -> APIResponse {
        APIResponse(status: status, body: ByteBuffer(bytes: bytes), headers: headers)
    }

    static func notModified(headers: [(String, String)]) -> APIResponse {
        APIResponse(status: 304, body: ByteBuffer(), headers: headers, notModified: true, countsAgainstQuota: false)
    }

    static func error(_ status: Int, _ message: String, docs: String = "https://docs.github.com/rest") -> APIResponse {
        var response = json(
            status, JSON.encode(ErrorJSON(message: message, documentation_url: docs, status: "\(status)")))
        response.countsAgainstQuota = status == 404 || status == 422
        return response
    }

    static func badCredentials() -> APIResponse {
        var response = error(401, "Bad credentials")
        response.countsAgainstQuota = false
        return response
    }
}

extension HTTPField.Name {
    static let rateLimitLimit = Self("x-ratelimit-limit")!
    static let rateLimitRemaining = Self("x-ratelimit-remaining")!
    static let rateLimitReset = Self("x-ratelimit-reset")!
    static let rateLimitUsed = Self("x-ratelimit-used")!
    static let rateLimitResource = Self("x-ratelimit-resource")!
    static let hostHeader = Self("Host")!
}

extension GitHubSimulator {
    static func hashToken(_ token: String) -> String {
        JSON.hex(SHA256.hash(data: Array(token.utf8)).prefix(8))
    }

    /// `Authorization: Bearer T` or `token T`.
    static func token(from header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let scheme = parts[0].lowercased()
        guard scheme == "bearer" || scheme == "token" else { return nil }
        let value = parts[1].trimmingCharacters(in: .whitespaces)
        return value.isEmpty ? nil : value
    }

    /// Removes credential-looking query values before a query string is stored.
    static func redactQuery(_ query: String?) -> String? {
        guard let query, !query.isEmpty else { return query }
        let secret: Set<String> = ["access_token", "refresh_token", "client_secret", "token", "code"]
        return query.split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            let name = pair.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            return secret.contains(name.lowercased()) ? "\(name)=REDACTED" : String(pair)
        }.joined(separator: "&")
    }

    private func randomFault(ordinal: UInt64) -> Fault? {
        let rates = (configuration.dropRate, configuration.errorRate, configuration.secondaryLimitRate)
        guard rates.0 > 0 || rates.1 > 0 || rates.2 > 0 || configuration.malformedRate > 0 else { return nil }
        var rng = SeededGenerator(configuration.seed, ordinal, 0xFA17)
        var roll = rng.unit()
        if roll < rates.0 { return .drop }
        roll -= rates.0
        if roll < rates.1 { return rng.unit() < 0.5 ? .serverError : .serviceUnavailable }
        roll -= rates.1
        if roll < rates.2 { return .secondaryLimit(retryAfter: configuration.secondaryLimitRetryAfter) }
        roll -= rates.2
        if roll < configuration.malformedRate { return .malformedJSON }
        return nil
    }

    func respond(to request: Request, context: SimulatorRequestContext) async throws -> Response {
        var request = request
        let path = request.uri.path
        if path == "/_sim" || path.hasPrefix("/_sim/") {
            return try await adminResponse(to: &request)
        }
        let token = Self.token(from: request.headers[.authorization])
        var record = RecordedRequest(
            method: request.method.rawValue, host: request.head.authority ?? request.headers[.hostHeader], path: path,
            query: Self.redactQuery(request.uri.query), status: 0, notModified: false,
            tokenHash: token.map(Self.hashToken), login: nil, date: Date(), fault: nil, countedAgainstQuota: false)

        if configuration.latency > .zero { try await Task.sleep(for: configuration.latency) }
        let (injected, ordinal) = faults.withLock { queue in (queue.take(path: path), queue.nextOrdinal()) }
        var fault = injected ?? randomFault(ordinal: ordinal)
        let requestId = "SIM:\(String(ordinal, radix: 16, uppercase: true))"
        if case .delay(let duration) = fault {
            try await Task.sleep(for: duration)
            fault = nil
        }
        record.fault = fault?.name
        if fault == .drop {
            log.withLock { $0.append(record) }
            context.channel.close(promise: nil)
            throw DroppedConnection()
        }

        let now = Timestamp.now()
        let isTokenExchange = path == "/login/oauth/access_token"
        var user: Int?
        if let token {
            user = credentials.withLock { $0.owner(ofValidToken: token) }
            record.login = credentials.withLock { $0.owner(ofAnyToken: token) }.map { "user\($0)" }
        }

        var response: APIResponse
        switch fault {
        case .serverError:
            response = APIResponse(
                status: 502, body: ByteBuffer(string: "<html><body><h1>502 Bad Gateway</h1></body></html>"),
                headers: [("Content-Type", "text/html")], countsAgainstQuota: false)
        case .serviceUnavailable:
            response = .error(503, "Service Unavailable")
            response.countsAgainstQuota = false
        case .secondaryLimit(let retryAfter):
            response = .error(
                403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                docs: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits")
            response.headers.append(("retry-after", "\(retryAfter)"))
            response.countsAgainstQuota = false
        case .secondaryLimitWithoutRetryAfter:
            response = .error(
                403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                docs: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits")
            response.countsAgainstQuota = false
        case .tooManyRequests(let retryAfter):
            response = .error(
                429, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                docs: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits")
            response.headers.append(("retry-after", "\(retryAfter)"))
            response.countsAgainstQuota = false
        case .rateLimited:
            response = rateLimitExceeded(user: user)
        case .unauthorized:
            response = .badCredentials()
        case .graphQLRateLimited:
            response = .json(
                200,
                Array(
                    (#"{"data":null,"errors":[{"type":"RATE_LIMITED","code":"graphql_rate_limit","#
                        + #""message":"API rate limit already exceeded for user ID 1."}]}"#).utf8))
            response.countsAgainstQuota = false
        default:
            if isTokenExchange {
                response = try await tokenExchange(request: &request, record: &record)
            } else if token == nil {
                response = .error(401, "Requires authentication")
                response.countsAgainstQuota = false
            } else if let user {
                let exhausted = credentials.withLock {
                    $0.quota(for: user, limit: configuration.quotaPerHour, now: now).remaining == 0
                }
                if exhausted {
                    response = rateLimitExceeded(user: user)
                } else if path == "/graphql" {
                    response = try await graphQL(request: &request, user: user, now: now)
                } else {
                    response = route(request: request, user: user, now: now)
                }
            } else {
                response = .badCredentials()
            }
        }

        var quota: QuotaSnapshot?
        if let user, !isTokenExchange {
            quota = credentials.withLock { creds in
                if response.countsAgainstQuota {
                    record.countedAgainstQuota = creds.consume(user, limit: configuration.quotaPerHour, now: now)
                }
                return creds.quota(for: user, limit: configuration.quotaPerHour, now: now)
            }
        }
        if fault == .rateLimited, let current = quota {
            quota = QuotaSnapshot(limit: current.limit, used: current.limit, remaining: 0, reset: current.reset)
        }
        // A refresh answer is never cut: the old pair is already retired, so a lost answer would lock the account
        // out for good, which no test wants from a random fault.
        if fault == .malformedJSON, response.status == 200, !isTokenExchange {
            let keep = max(1, response.body.readableBytes / 2)
            response.body = response.body.getSlice(at: response.body.readerIndex, length: keep) ?? ByteBuffer()
        }

        if response.status == 200, fault != .malformedJSON, let user, !response.served.isEmpty {
            let time = Date().timeIntervalSince1970
            world.withLock { $0.recordServed(user, response.served, at: time) }
        }

        var headers = HTTPFields()
        let snapshot = quota ?? QuotaSnapshot(limit: 60, used: 0, remaining: 60, reset: now + 3_600)
        headers[.rateLimitLimit] = "\(snapshot.limit)"
        headers[.rateLimitRemaining] = "\(snapshot.remaining)"
        headers[.rateLimitReset] = "\(snapshot.reset)"
        headers[.rateLimitUsed] = "\(snapshot.used)"
        headers[.rateLimitResource] = "core"
        if response.status != 304, !response.headers.contains(where: { $0.0.lowercased() == "content-type" }) {
            headers[.contentType] = "application/json; charset=utf-8"
        }
        headers[HTTPField.Name("X-GitHub-Media-Type")!] = "github.v3; format=json"
        headers[HTTPField.Name("X-GitHub-Request-Id")!] = requestId
        for (name, value) in response.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        record.status = response.status
        record.notModified = response.notModified
        log.withLock { $0.append(record) }
        if path == "/notifications", response.status == 200, let user {
            // Test hooks run after the page is made and before it is sent: the client sees this page as it was,
            // and its next request sees the change.
            let due = pageHooks.withLock { hooks -> [@Sendable () -> Void] in
                var due: [@Sendable () -> Void] = []
                for index in hooks.indices where hooks[index].user == user {
                    hooks[index].remaining -= 1
                    if hooks[index].remaining == 0 { due.append(hooks[index].action) }
                }
                hooks.removeAll { $0.remaining <= 0 }
                return due
            }
            for action in due { action() }
        }
        return Response(status: .init(code: response.status), headers: headers, body: .init(byteBuffer: response.body))
    }

    private func rateLimitExceeded(user: Int?) -> APIResponse {
        var response = APIResponse.error(
            403,
            "API rate limit exceeded for user ID \(user.map { WorldState.userId($0, seed: configuration.seed) } ?? 0). If you reach out to "
                + "GitHub Support for help, please include the request ID.",
            docs: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit")
        response.countsAgainstQuota = false
        return response
    }

    // MARK: Token refresh

    private func tokenExchange(request: inout Request, record: inout RecordedRequest) async throws -> APIResponse {
        guard request.method == .post else { return .error(404, "Not Found") }
        let buffer = try await request.collectBody(upTo: 64 * 1024)
        let text = String(buffer: buffer)
        var fields = parseQuery(request.uri.query)
        if text.trimmingCharacters(in: .whitespaces).hasPrefix("{") {
            if let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] {
                for (key, value) in object { fields[key] = "\(value)" }
            }
        } else {
            for (key, value) in parseQuery(text) { fields[key] = value }
        }
        let wantsForm = (request.headers[.accept] ?? "").contains("x-www-form-urlencoded")
        func answer(_ pairs: [(String, String)], numbers: Set<String> = []) -> APIResponse {
            if wantsForm {
                let body = pairs.map { "\($0.0)=\(encodeComponent($0.1))" }.joined(separator: "&")
                var response = APIResponse.json(
                    200, Array(body.utf8),
                    headers: [
                        ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
                    ])
                response.countsAgainstQuota = false
                return response
            }
            var object: [String: Any] = [:]
            for (key, value) in pairs { object[key] = numbers.contains(key) ? (Int(value) ?? 0) as Any : value as Any }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            var response = APIResponse.json(200, Array(data))
            response.countsAgainstQuota = false
            return response
        }
        guard fields["grant_type"] == "refresh_token", let refreshToken = fields["refresh_token"] else {
            return answer([
                ("error", "unsupported_grant_type"),
                ("error_description", "Only grant_type=refresh_token with a refresh_token is simulated."),
                (
                    "error_uri",
                    "https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/"
                        + "refreshing-user-access-tokens"
                ),
            ])
        }
        record.tokenHash = Self.hashToken(refreshToken)
        let refreshed = credentials.withLock { creds -> (SimulatedUser?, Int?) in
            let owner = creds.owner(ofAnyToken: refreshToken)
            return (creds.refresh(refreshToken), owner)
        }
        record.login = refreshed.1.map { "user\($0)" }
        guard let user = refreshed.0 else {
            return answer([
                ("error", "bad_refresh_token"),
                ("error_description", "The refresh token passed is incorrect or expired."),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/"
                        + "troubleshooting-oauth-app-access-token-request-errors#bad-verification-code"
                ),
            ])
        }
        return answer(
            [
                ("access_token", user.token), ("expires_in", "28800"), ("refresh_token", user.refreshToken),
                ("refresh_token_expires_in", "15811200"), ("scope", ""), ("token_type", "bearer"),
            ], numbers: ["expires_in", "refresh_token_expires_in"])
    }
}

/// Whether an `If-None-Match` header names this ETag (weak or strong, list or `*`).
func ifNoneMatch(_ header: String?, matches etag: String) -> Bool {
    guard let header else { return false }
    for candidate in header.split(separator: ",") {
        var value = candidate.trimmingCharacters(in: .whitespaces)
        if value == "*" { return true }
        if value.hasPrefix("W/") { value.removeFirst(2) }
        if value == etag { return true }
    }
    return false
}
