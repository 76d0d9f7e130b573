public import Foundation

/// How the simulated GitHub behaves: the world it generates and the faults it injects.
///
/// Everything random is derived from `seed`, so two simulators with the same configuration (including `start`)
/// serve the same history and the same ground truth. New items keep appearing on the real clock after `start`.
public struct SimulatorConfiguration: Sendable {
    /// Address to bind. Loopback by default: the simulator is a test double, never a public service. A container
    /// binds `0.0.0.0` and sets `publicBaseURL` to the name other containers reach it by.
    public var host = "127.0.0.1"
    /// The origin put into every URL the simulator returns (Link, subject, comment URLs) and reported as `baseURL`;
    /// nil means `http://{host}:{bound port}`. No trailing slash.
    public var publicBaseURL: String?
    /// 0 binds any free port; read `GitHubSimulator.baseURL` after `start()`.
    public var port = 0
    public var seed: UInt64 = 1
    /// Number of simulated accounts (`user1` … `userN`). Generation is lazy, so thousands are cheap.
    public var users = 3
    /// Added to every API request before it is answered (not to `/_sim` admin requests).
    public var latency: Duration = .zero
    /// Share of API requests answered with 502/503.
    public var errorRate = 0.0
    /// Share of API requests answered 200 with a truncated JSON body.
    public var malformedRate = 0.0
    /// Share of API requests whose connection is closed without any response.
    public var dropRate = 0.0
    /// Share of API requests answered 403 "secondary rate limit" with `retry-after`.
    public var secondaryLimitRate = 0.0
    /// `retry-after` seconds sent with random secondary-limit faults.
    public var secondaryLimitRetryAfter = 5
    /// `X-Poll-Interval` seconds on notification and event responses.
    public var pollInterval = 60
    /// Requests per hour per account; 304 responses are free as on GitHub.
    public var quotaPerHour = 5000
    /// How far before `start` the generated history reaches.
    public var historyHours = 12
    /// Mean number of generated history items per user (spread over `historyHours`). Kept well below the
    /// 300-event cap so a first sync can see all of it.
    public var historyItems = 30
    /// Mean time between new items per user after `start` (each gap is seeded, between 0.5× and 1.5×).
    public var activityInterval: Duration = .seconds(30)
    /// Only the newest `eventCap` events of a user are reachable through `/users/{u}/events`, as on GitHub.
    public var eventCap = 300
    /// … and only events created within this long before now (30 days since 2025-01-30, 90 before).
    public var eventRetention: Duration = .seconds(30 * 86_400)
    /// GitHub's thread semantics (the default, as GitHub does it): one notification thread per subject (issue, pull
    /// request, discussion) and user, re-bumped by new activity (same thread id, new `updated_at`, maybe a new reason
    /// and latest comment). Off, every generated notification gets a thread and a subject of its own (a tidy world,
    /// for a test that counts threads or needs the seed's history without re-bumps).
    public var threadBumps = true
    /// Each generated event shows up in `/users/{u}/events` a seeded random time between 0 and this after its
    /// `created_at` (GitHub documents 30 s to 6 h). Test-made events use `addEvent(appearsAfter:)` instead.
    public var eventLag: Duration = .zero
    /// Serve the event payloads of GitHub's OpenAPI examples (a whole pull request in `PullRequestEvent`), as GitHub
    /// did before 2025-10-07. Off (the default), `payload.pull_request` of `PullRequestEvent` holds only `url`, `id`,
    /// `number`, `head` and `base`, as GitHub serves it today. Only a test about the old shape should turn this on.
    public var fullEventPayloads = false
    /// The moment that separates history from live activity.
    public var start = Date()
    /// Where `html_url`s point; never requested by a client, only shown to people.
    public var htmlBaseURL = "https://github.com"
    /// Oldest requests are forgotten past this many (distinct Host headers are remembered forever).
    public var requestLogLimit = 200_000

    public init() {}
}

/// A simulated account and its current credentials.
public struct SimulatedUser: Sendable, Hashable, Codable {
    public var login: String
    public var id: Int
    /// Current access token (`ghu_sim_…`); changes when refreshed.
    public var token: String
    /// Current refresh token (`ghr_sim_…`); one use only.
    public var refreshToken: String

    public init(login: String, id: Int, token: String, refreshToken: String) {
        self.login = login
        self.id = id
        self.token = token
        self.refreshToken = refreshToken
    }
}

/// One activity a correct GitHub integration must produce, with the exact id and text it must use.
public struct ExpectedActivity: Sendable, Hashable, Codable {
    /// `github:notification:{thread id}:{updated_at}` or `github:event:{event id}`.
    public var id: String
    /// The notification reason (`assign`, `mention`, …) or `pr_opened`, `issue_opened`, `pr_comment`,
    /// `issue_comment` for the user's own events.
    public var kind: String
    public var occurredAt: Date
    public var text: String
    /// The subject's (or the event's issue / pull request's) `html_url`.
    public var sourceURL: String
    /// `owner/name`.
    public var repo: String
    /// The issue, pull request or discussion number; 0 when there is none.
    public var number: Int
    /// The web URL of the comment that caused it, when a comment did.
    public var commentURL: String?
    /// When a client could first see it: a notification version when it became the listed one, an event when its
    /// visibility lag had passed.
    public var visibleFrom: Date
    /// When a newer version of the same thread replaced it in the listing; nil while it is current (and always for
    /// events).
    public var supersededAt: Date?

    public init(
        id: String, kind: String, occurredAt: Date, text: String, sourceURL: String, repo: String, number: Int,
        commentURL: String? = nil, visibleFrom: Date? = nil, supersededAt: Date? = nil
    ) {
        self.id = id
        self.kind = kind
        self.occurredAt = occurredAt
        self.text = text
        self.sourceURL = sourceURL
        self.repo = repo
        self.number = number
        self.commentURL = commentURL
        self.visibleFrom = visibleFrom ?? occurredAt
        self.supersededAt = supersededAt
    }
}

/// What clients polling an account could see, by the rules in `Truth.swift`.
public struct PolledTruth: Sendable, Hashable, Codable {
    /// Every version and event some poll of the account could have listed: a correct poller emits nothing else.
    public var seen: [ExpectedActivity]
    /// What every correct poller must have emitted: events visible at an events read, and thread versions that
    /// stayed current from the start of one listing to the start of the next (or until now).
    public var required: [ExpectedActivity]
}

/// A fault forced onto upcoming API requests with `GitHubSimulator.injectFault(_:count:)`.
public enum Fault: Sendable, Hashable {
    /// 502 Bad Gateway.
    case serverError
    /// 503 with GitHub's JSON error body.
    case serviceUnavailable
    /// 403 "You have exceeded a secondary rate limit" with `retry-after: N` seconds.
    case secondaryLimit(retryAfter: Int)
    /// 403 "You have exceeded a secondary rate limit" without `retry-after`.
    case secondaryLimitWithoutRetryAfter
    /// 429 Too Many Requests with `retry-after: N` seconds.
    case tooManyRequests(retryAfter: Int)
    /// 200 with the body cut in half.
    case malformedJSON
    /// The connection is closed without a response.
    case drop
    /// 403 "API rate limit exceeded" with `x-ratelimit-remaining: 0` (quota is not actually touched).
    case rateLimited
    /// 401 "Bad credentials" although the token is valid.
    case unauthorized
    /// Waits this long before answering normally.
    case delay(Duration)
    /// 200 with `{"data": null, "errors": [{"type": "RATE_LIMITED", …}]}`: how GitHub's GraphQL API answers when
    /// its own budget is spent (meant for `/graphql`).
    case graphQLRateLimited

    var name: String {
        switch self {
        case .serverError: "serverError"
        case .serviceUnavailable: "serviceUnavailable"
        case .secondaryLimit: "secondaryLimit"
        case .secondaryLimitWithoutRetryAfter: "secondaryLimitWithoutRetryAfter"
        case .tooManyRequests: "tooManyRequests"
        case .malformedJSON: "malformedJSON"
        case .drop: "drop"
        case .rateLimited: "rateLimited"
        case .unauthorized: "unauthorized"
        case .delay: "delay"
        case .graphQLRateLimited: "graphQLRateLimited"
        }
    }
}

/// One request as the simulator saw it. Holds a hash prefix of the credential, never the credential.
public struct RecordedRequest: Sendable, Hashable, Codable {
    public var method: String
    /// The `Host` header as sent (nil when absent).
    public var host: String?
    public var path: String
    /// Raw query string, with any credential-looking parameter value replaced by `REDACTED`.
    public var query: String?
    /// 0 when the connection was dropped on purpose.
    public var status: Int
    public var notModified: Bool
    /// First 16 hex digits of SHA-256 of the presented token; nil when no token was sent.
    public var tokenHash: String?
    /// The account the token belongs to (also for expired tokens), when known.
    public var login: String?
    public var date: Date
    /// The injected or random fault that shaped the answer, if any.
    public var fault: String?
    /// Whether the request counted against the account's quota.
    public var countedAgainstQuota: Bool
}

/// Errors of the simulator: a code plus what went wrong and what to do.
public struct SimulatorError: Error, CustomStringConvertible, Sendable {
    private enum Code: Sendable {
        case notStarted
        case bindFailed
        case unknownUser
        case unknownThread
        case invalidArgument
    }

    private let code: Code
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    static func notStarted() -> Self { .init(.notStarted, "the simulator is not running: call start() first") }
    static func bindFailed(_ detail: String) -> Self {
        .init(.bindFailed, "could not bind the simulator's HTTP server (\(detail)): choose another port or use 0")
    }
    static func unknownUser(_ login: String) -> Self {
        .init(.unknownUser, "no simulated user '\(login)': use a login from `users` (user1 … userN)")
    }
    static func unknownThread(_ id: String) -> Self {
        .init(.unknownThread, "no notification thread '\(id)': use an id returned by addNotification or the API")
    }
    static func invalidArgument(_ detail: String) -> Self { .init(.invalidArgument, detail) }

    public var isUnknownUser: Bool { code == .unknownUser }
    public var description: String { "SimulatorError: \(message)" }
}
