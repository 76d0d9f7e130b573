public import AsyncHTTPClient
import Foundation
public import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Synchronization
import SyncModel

/// GitHub's REST API over async-http-client, with the rules that keep a token safe and quota low.
///
/// One client serves every account of a process: it owns the process-wide limits (concurrent requests per
/// token and in total), the per-token rate-limit budget and the subject cache, so accounts synced in
/// parallel share them. Tokens are passed per request and never logged.
///
/// - Important: A URL that came from a response (Link `next`, `subject.url`, `latest_comment_url`) is only
///   requested when its scheme, host and port equal ``GitHubConfiguration/baseURL``'s; anything else is refused
///   and counted in `github_refused_urls_total`, so a forged or unexpected URL never receives the token.
public final class GitHubClient: Sendable {
    public let configuration: GitHubConfiguration
    let logger: Logger
    let httpClient: HTTPClient
    let limiter: RequestLimiter
    let budgets = RateLimitBudgets()
    let subjectCache: SubjectCache
    private let apiOrigin: Origin?
    private let refusedURLs = Counter(label: "github_refused_urls_total")
    private let requestCounter = Counter(label: "github_requests_total")

    /// - Parameters:
    ///   - configuration: API origin, limits and retry policy.
    ///   - httpClient: The HTTP client to use; nil uses one process-wide client that never follows redirects
    ///     by itself (redirects are followed here, only within the API origin).
    ///   - logger: Receives request failures and refusals, never tokens.
    public init(configuration: GitHubConfiguration, httpClient: HTTPClient? = nil, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.httpClient = httpClient ?? sharedGitHubHTTPClient
        self.limiter = RequestLimiter(
            perKeyLimit: configuration.maxConcurrentRequestsPerToken, globalLimit: configuration.maxConcurrentRequests)
        self.subjectCache = SubjectCache(capacity: configuration.subjectCacheCapacity)
        self.apiOrigin = Origin(configuration.baseURL)
    }

    /// `baseURL` + `path` (path starts with `/`).
    func apiURL(_ pathAndQuery: String) -> String {
        let base =
            configuration.baseURL.hasSuffix("/") ? String(configuration.baseURL.dropLast()) : configuration.baseURL
        return base + pathAndQuery
    }

    /// True when `url` has the API's scheme, host and port.
    func isAPIOrigin(_ url: String) -> Bool {
        guard let apiOrigin, let origin = Origin(url) else { return false }
        return origin == apiOrigin
    }

    /// Refuses (logs without the token and counts) a response-supplied URL outside the API origin.
    func checkOrigin(_ url: String, purpose: String) throws(GitHubError) {
        guard isAPIOrigin(url) else {
            refusedURLs.increment()
            logger.warning(
                "refused a URL outside the GitHub API origin; the item is skipped",
                metadata: ["url": "\(url)", "purpose": "\(purpose)", "apiOrigin": "\(configuration.baseURL)"])
            throw GitHubError(.refusedURL(url))
        }
    }

    /// GETs `url` with `token`, honouring rate limits, retrying 5xx/network errors and following redirects
    /// within the API origin. 304, 404 and other client errors come back as responses; 401 and exhausted
    /// retries throw.
    ///
    /// - Parameters:
    ///   - conditional: `If-None-Match` / `If-Modified-Since` headers to send.
    ///   - deadline: No wait or request goes past this; if one would, ``GitHubError`` says when to retry.
    ///   - credentials: Supplies the token and, after a 401, a refreshed one (at most once per sync).
    func get(
        _ url: String, credentials: AccountCredentials, conditional: [(String, String)] = [], deadline: Date
    ) async throws(GitHubError) -> GitHubResponse {
        try await send(url, method: .GET, body: nil, credentials: credentials, headers: conditional, deadline: deadline)
    }

    /// The request loop behind ``get(_:credentials:conditional:deadline:)`` and ``postJSON(_:_:body:credentials:deadline:)``:
    /// the origin guard on every URL, rate limits, retries, one token refresh, redirects (GET only).
    private func send(
        _ url: String, method: HTTPMethod, body: [UInt8]?, credentials: AccountCredentials,
        headers conditional: [(String, String)], deadline: Date
    ) async throws(GitHubError) -> GitHubResponse {
        var url = url
        var redirects = 0
        var token = await credentials.accessToken
        var refreshedAfter401 = false
        var attempt = 0
        var secondaryWaits = 0
        var rateLimitWaits = 0
        while true {
            try checkOrigin(url, purpose: "request")
            attempt += 1
            try await waitForBudget(token: token, deadline: deadline)
            let outcome = await exchange(
                url: url, method: method, body: body, token: token, headers: conditional, deadline: deadline)
            let response: GitHubResponse
            switch outcome {
            case .success(let value):
                response = value
            case .failure(let error):
                if case .deadlineExceeded = error.code { throw error }
                try await backoff(attempt: attempt, reason: "\(error)", deadline: deadline, url: url)
                continue
            }
            switch response.status {
            case 401:
                // Zero retries with the same token; one refresh when the account can.
                guard !refreshedAfter401,
                    let fresh = try await credentials.tokenAfterUnauthorized(
                        failed: token, client: self, deadline: deadline)
                else { throw GitHubError(.unauthorized) }
                refreshedAfter401 = true
                token = fresh
                attempt -= 1
            case 403, 429:
                guard
                    try await waitOutRateLimit(
                        response, secondaryWaits: &secondaryWaits, rateLimitWaits: &rateLimitWaits, deadline: deadline)
                else { return response }
                attempt -= 1
            case 500...599:
                try await backoff(attempt: attempt, reason: "HTTP \(response.status)", deadline: deadline, url: url)
            case 301, 302, 307, 308:
                guard method == .GET, redirects < 3, let location = response.headers.first(name: "location") else {
                    return response
                }
                redirects += 1
                url = location.hasPrefix("/") ? apiURL(location) : location
                attempt -= 1
            default:
                return response
            }
        }
    }

    /// Waits out a 403 or 429 that is a rate limit. False when it is not one (the response is the answer).
    /// - Throws: ``GitHubError`` `rateLimited` when the wait outlasts the deadline or the server keeps limiting.
    private func waitOutRateLimit(
        _ response: GitHubResponse, secondaryWaits: inout Int, rateLimitWaits: inout Int, deadline: Date
    ) async throws(GitHubError) -> Bool {
        guard let wait = rateLimitWait(response, secondaryWaits: secondaryWaits) else { return false }
        if case .secondary = wait.kind { secondaryWaits += 1 }
        rateLimitWaits += 1
        let until = Date().addingTimeInterval(wait.seconds)
        // A server that keeps limiting (e.g. `retry-after: 0` forever) must not be hammered: after a few waits, stop
        // and come back a minute later.
        guard rateLimitWaits <= Self.maxRateLimitWaits else {
            throw GitHubError(.rateLimited(until: max(until, Date().addingTimeInterval(60))))
        }
        guard until < deadline else {
            logger.info(
                "GitHub rate limit outlasts the sync deadline; stopping early",
                metadata: ["retryAt": "\(until)", "status": "\(response.status)"])
            throw GitHubError(.rateLimited(until: until))
        }
        logger.debug("rate limited; waiting", metadata: ["seconds": "\(wait.seconds)"])
        try await sleep(seconds: wait.seconds)
        return true
    }

    /// GETs and decodes JSON, retrying an undecodable body like a 5xx (simulated and real proxies do send
    /// truncated bodies). 304 yields nil.
    func getJSON<T: Decodable & Sendable>(
        _ type: T.Type, _ url: String, credentials: AccountCredentials, conditional: [(String, String)] = [],
        deadline: Date
    ) async throws(GitHubError) -> (value: T?, response: GitHubResponse) {
        var attempt = 0
        while true {
            attempt += 1
            let response = try await get(url, credentials: credentials, conditional: conditional, deadline: deadline)
            if response.status == 304 { return (nil, response) }
            guard (200..<300).contains(response.status) else {
                throw GitHubError(
                    .http(status: response.status), ssoRequirement: response.headers.first(name: "x-github-sso"),
                    serverMessage: (try? JSONDecoder().decode(GitHubErrorBody.self, from: response.body))?.message)
            }
            do {
                return (try JSONDecoder().decode(T.self, from: response.body), response)
            } catch {
                let reason = "\(T.self): \(error)"
                guard attempt < configuration.maxAttempts else { throw GitHubError(.malformed(reason)) }
                try await backoff(attempt: attempt, reason: "undecodable body", deadline: deadline, url: url)
            }
        }
    }

    /// POSTs a JSON body (a GraphQL query) and decodes the answer. `url` must be on the API origin like every other
    /// request that carries the token; a 2xx body that does not decode is retried like a 5xx.
    func postJSON<T: Decodable & Sendable>(
        _ type: T.Type, _ url: String, body: [UInt8], credentials: AccountCredentials, deadline: Date
    ) async throws(GitHubError) -> T {
        var attempt = 0
        while true {
            attempt += 1
            let response = try await send(
                url, method: .POST, body: body, credentials: credentials,
                headers: [("Content-Type", "application/json")], deadline: deadline)
            guard (200..<300).contains(response.status) else { throw GitHubError(.http(status: response.status)) }
            do {
                return try JSONDecoder().decode(T.self, from: response.body)
            } catch {
                let reason = "\(T.self): \(error)"
                guard attempt < configuration.maxAttempts else { throw GitHubError(.malformed(reason)) }
                try await backoff(attempt: attempt, reason: "undecodable body", deadline: deadline, url: url)
            }
        }
    }

    /// POSTs a form to GitHub's token endpoint and returns the new pair. The refresh token goes only to
    /// ``GitHubConfiguration/effectiveTokenURL``.
    func refreshTokens(refreshToken: String, deadline: Date) async throws(GitHubError) -> (
        access: String, refresh: String?
    ) {
        var form: [(String, String)] = [("grant_type", "refresh_token"), ("refresh_token", refreshToken)]
        if let id = configuration.clientId { form.append(("client_id", id)) }
        if let secret = configuration.clientSecret { form.append(("client_secret", secret)) }
        var request = HTTPClientRequest(url: configuration.effectiveTokenURL)
        request.method = .POST
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "User-Agent", value: configuration.userAgent)
        request.body = .bytes(ByteBuffer(string: formEncode(form)))
        let remaining = deadline.timeIntervalSinceNow
        guard remaining > 0 else { throw GitHubError(.deadlineExceeded) }
        do {
            let timeout = min(remaining, seconds(configuration.requestTimeout))
            let response = try await httpClient.execute(
                request, deadline: .now() + .milliseconds(Int64(timeout * 1000)), logger: logger)
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status == .ok,
                let decoded = try? JSONDecoder().decode(OAuthTokenResponse.self, from: Data(body.readableBytesView)),
                let access = decoded.access_token, decoded.error == nil
            else {
                logger.warning("token refresh rejected", metadata: ["status": "\(response.status.code)"])
                throw GitHubError(.unauthorized)
            }
            return (access, decoded.refresh_token)
        } catch let error as GitHubError {
            throw error
        } catch {
            logger.warning("token refresh failed", metadata: ["error": "\(String(describing: type(of: error)))"])
            throw GitHubError(.unauthorized)
        }
    }

    // MARK: - One exchange

    private func exchange(
        url: String, method: HTTPMethod, body: [UInt8]?, token: String, headers extra: [(String, String)],
        deadline: Date
    ) async -> Result<GitHubResponse, GitHubError> {
        let key = budgetKey(token)
        let remaining = deadline.timeIntervalSinceNow
        guard remaining > 0 else {
            budgets.cancel(key: key)
            return .failure(GitHubError(.deadlineExceeded))
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "application/vnd.github+json")
        request.headers.add(name: "X-GitHub-Api-Version", value: configuration.apiVersion)
        request.headers.add(name: "User-Agent", value: configuration.userAgent)
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        let timeout = min(remaining, seconds(configuration.requestTimeout))
        do {
            return .success(
                try await limiter.withSlot(key: key) {
                    requestCounter.increment()
                    let response = try await httpClient.execute(
                        request, deadline: .now() + .milliseconds(Int64(timeout * 1000)), logger: logger)
                    let body = try await response.body.collect(upTo: configuration.maxBodyBytes)
                    let result = GitHubResponse(
                        url: url, status: Int(response.status.code), headers: response.headers,
                        body: Data(body.readableBytesView))
                    // GraphQL has a budget of its own (`x-ratelimit-resource: graphql`); it must not stand in for the
                    // REST quota the budget tracks.
                    if let resource = result.rateLimit.resource, resource != "core" {
                        budgets.cancel(key: key)
                    } else {
                        budgets.record(key: key, result.rateLimit)
                    }
                    return result
                })
        } catch is CancellationError {
            budgets.cancel(key: key)
            return .failure(GitHubError(.deadlineExceeded))
        } catch {
            budgets.cancel(key: key)
            if deadline.timeIntervalSinceNow <= 0 { return .failure(GitHubError(.deadlineExceeded)) }
            logger.debug("GitHub request failed", metadata: ["url": "\(url)", "error": "\(error)"])
            return .failure(GitHubError(.unavailable("\(error)")))
        }
    }

    /// Never spends past the quota: with no requests left before `reset`, waits for it, or stops if that
    /// passes the deadline.
    private func waitForBudget(token: String, deadline: Date) async throws(GitHubError) {
        let key = budgetKey(token)
        while let resetAt = budgets.reserve(key: key, now: Date()) {
            guard resetAt < deadline else { throw GitHubError(.rateLimited(until: resetAt)) }
            try await sleep(seconds: max(0.01, resetAt.timeIntervalSinceNow))
        }
    }

    private func backoff(attempt: Int, reason: String, deadline: Date, url: String) async throws(GitHubError) {
        guard attempt < configuration.maxAttempts else {
            logger.info("GitHub request failed after retries", metadata: ["url": "\(url)", "reason": "\(reason)"])
            throw GitHubError(.unavailable(reason))
        }
        let delay = seconds(
            Backoff(initial: configuration.initialBackoff, maximum: configuration.maxBackoff)
                .delay(afterFailures: attempt, scaledBy: Double.random(in: 0.5...1.0)))
        guard Date().addingTimeInterval(delay) < deadline else { throw GitHubError(.unavailable(reason)) }
        try await sleep(seconds: delay)
    }

    private enum WaitKind { case retryAfter, exhausted, secondary }

    /// Rate-limit waits one request may take before the sync gives up on it.
    static let maxRateLimitWaits = 5

    /// How long GitHub asks us to wait after a 403/429, or nil when it is a plain "forbidden".
    private func rateLimitWait(_ response: GitHubResponse, secondaryWaits: Int) -> (kind: WaitKind, seconds: Double)? {
        if let retryAfter = response.headers.first(name: "retry-after") {
            if let secondsValue = HeaderLimits.seconds(retryAfter) { return (.retryAfter, secondsValue) }
            if let date = HTTPDate.parse(retryAfter) {
                return (.retryAfter, min(max(0, date.timeIntervalSinceNow), HeaderLimits.longestWait))
            }
        }
        let info = response.rateLimit
        if info.remaining == 0, let reset = info.reset {
            return (.exhausted, max(1, reset.timeIntervalSinceNow))
        }
        let message = String(decoding: response.body.prefix(2048), as: UTF8.self).lowercased()
        if response.status == 429 || message.contains("secondary rate limit") || message.contains("abuse") {
            let wait = Backoff(
                initial: configuration.secondaryLimitMinimumWait, maximum: Duration.seconds(HeaderLimits.longestWait)
            )
            .delay(afterFailures: secondaryWaits + 1)
            return (.secondary, seconds(wait))
        }
        return nil
    }

    private func sleep(seconds value: Double) async throws(GitHubError) {
        do {
            try await Task.sleep(for: .milliseconds(Int64(value * 1000)))
        } catch {
            throw GitHubError(.deadlineExceeded)
        }
    }

    func budgetKey(_ token: String) -> String { String(token.hashValue, radix: 36) }

    /// The subject cache's key: the URL per token, as GitHub's ETags are (the token itself is never kept).
    func subjectCacheKey(_ url: String, token: String) -> String { budgetKey(token) + " " + url }
}

/// One HTTP response, body buffered.
struct GitHubResponse: Sendable {
    var url: String
    var status: Int
    var headers: HTTPHeaders
    var body: Data

    var rateLimit: RateLimitInfo { RateLimitInfo(header: { headers.first(name: $0) }) }
    var etag: String? { headers.first(name: "etag") }
    var lastModified: String? { headers.first(name: "last-modified") }
    var nextLink: String? { headers.first(name: "link").flatMap { LinkHeader.parse($0)["next"] } }
    var pollInterval: Int? {
        headers.first(name: "x-poll-interval").flatMap { Int($0) }.map {
            min(max(0, $0), HeaderLimits.longestPollInterval)
        }
    }
}

/// Per-token quota as the last responses reported it, minus requests in flight, so parallel subject fetches
/// cannot overshoot the remaining quota.
final class RateLimitBudgets: Sendable {
    private struct Budget {
        var remaining: Int?
        var reset: Date?
        var reserved = 0
    }

    private let budgets = Mutex<[String: Budget]>([:])

    /// Reserves one request, or returns the time the quota resets when none is left.
    func reserve(key: String, now: Date) -> Date? {
        budgets.withLock { budgets in
            var budget = budgets[key] ?? Budget()
            if let reset = budget.reset, reset <= now {
                budget.remaining = nil
                budget.reset = nil
            }
            if let remaining = budget.remaining, let reset = budget.reset, remaining - budget.reserved <= 0 {
                budgets[key] = budget
                return reset
            }
            budget.reserved += 1
            budgets[key] = budget
            return nil
        }
    }

    func record(key: String, _ info: RateLimitInfo) {
        budgets.withLock { budgets in
            var budget = budgets[key] ?? Budget()
            budget.reserved = max(0, budget.reserved - 1)
            if let remaining = info.remaining {
                if let reset = info.reset, let known = budget.reset, abs(reset.timeIntervalSince(known)) < 1,
                    let knownRemaining = budget.remaining
                {
                    budget.remaining = min(knownRemaining, remaining)  // responses may arrive out of order
                } else {
                    budget.remaining = remaining
                }
                budget.reset = info.reset ?? budget.reset
            }
            budgets[key] = budget
        }
    }

    func cancel(key: String) {
        budgets.withLock { budgets in
            if var budget = budgets[key] {
                budget.reserved = max(0, budget.reserved - 1)
                budgets[key] = budget
            }
        }
    }
}

/// Scheme, host and port of a URL, with default ports filled in.
struct Origin: Hashable, Sendable {
    var scheme: String
    var host: String
    var port: Int

    init?(_ url: String) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host?.lowercased(), !host.isEmpty
        else { return nil }
        guard let port = components.port ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : nil) else {
            return nil
        }
        self.scheme = scheme
        self.host = host
        self.port = port
    }
}

func seconds(_ duration: Duration) -> Double {
    let parts = duration.components
    return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
}

private func formEncode(_ pairs: [(String, String)]) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return pairs.map { name, value in
        "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value)"
    }.joined(separator: "&")
}

/// The process-wide HTTP client: never follows redirects by itself, so a redirect cannot carry the
/// Authorization header to another host. Like `HTTPClient.shared`, it lives for the whole process.
private let sharedGitHubHTTPClient: HTTPClient = {
    var configuration = HTTPClient.Configuration(
        redirectConfiguration: .disallow,
        timeout: .init(connect: .seconds(10), read: .seconds(60)))
    configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 100)
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
}()
