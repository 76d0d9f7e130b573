import Foundation

/// How the GitHub integration talks to GitHub and how much it reads per sync.
///
/// Defaults are GitHub's production values and the semantics issue 3 asks for; tests and the benchmark point
/// `baseURL` at the simulator and shorten the waits.
public struct GitHubConfiguration: Sendable {
    /// The REST API origin (scheme, host, port and optional path prefix). The token is only ever sent here.
    public var baseURL: String = "https://api.github.com"
    /// Where refresh tokens are exchanged. nil: GitHub's `https://github.com/login/oauth/access_token` for the
    /// default `baseURL`, else `{baseURL}/login/oauth/access_token` (the simulator serves it there).
    public var tokenURL: String? = nil
    /// OAuth app credentials sent with a refresh, when the app requires them.
    public var clientId: String? = nil
    public var clientSecret: String? = nil
    public var userAgent: String = "activity-sync"
    public var apiVersion: String = "2022-11-28"

    /// Upper bound for one HTTP exchange (also bounded by the sync deadline).
    public var requestTimeout: Duration = .seconds(30)
    /// Requests in flight per token. GitHub allows 100 per user; staying well below avoids secondary limits.
    public var maxConcurrentRequestsPerToken: Int = 10
    /// Requests in flight in the whole process.
    public var maxConcurrentRequests: Int = 100
    /// Subjects (issues, PRs, comments) whose ETag and body are kept for conditional requests.
    public var subjectCacheCapacity: Int = 10_000
    /// Attempts for one request on 5xx, network errors or an undecodable body (1 = no retry).
    public var maxAttempts: Int = 4
    /// First backoff after a 5xx/network error; doubles per attempt, with jitter, up to `maxBackoff`.
    public var initialBackoff: Duration = .milliseconds(500)
    public var maxBackoff: Duration = .seconds(30)
    /// The least wait after a secondary rate limit without `retry-after` (GitHub asks for at least a minute).
    public var secondaryLimitMinimumWait: Duration = .seconds(60)
    /// Responses larger than this are refused rather than buffered.
    public var maxBodyBytes: Int = 16 << 20

    /// The first sync of an account reads this far back.
    public var firstSyncWindow: Duration = .seconds(24 * 3600)
    /// Each sync re-reads this much before its watermark, and drops repeats by id.
    public var overlap: Duration = .seconds(120)
    public var notificationsPerPage: Int = 50
    public var eventsPerPage: Int = 100
    /// Pages read per endpoint and sync at most; beyond that the state records a gap.
    public var maxPages: Int = 20
    /// Subjects fetched concurrently within one sync.
    public var subjectParallelism: Int = 10
    /// The most recently emitted notification ids the state keeps to drop repeats of the overlap; ids behind the
    /// watermark minus the overlap are pruned long before this bound matters.
    public var recentIdLimit: Int = 2_000
    /// How late an event may appear in `/users/{u}/events` and still be emitted: GitHub documents 30 s to 6 h.
    /// A read that is not a 304 goes this far below the events watermark and compares event ids, so it costs
    /// more pages only for accounts with more than a page of events in this span; an unchanged feed stays a 304.
    public var eventLagHorizon: Duration = .seconds(6 * 3600)
    /// A notification thread whose subject fails on this many syncs (counted per thread, across the versions
    /// GitHub re-bumps it to) is emitted with what the notification itself says, and the watermark moves on.
    public var stuckSubjectSyncs: Int = 3
    /// … or when it has been failing for this long, whichever comes first.
    public var stuckSubjectAge: Duration = .seconds(6 * 3600)
    /// Discussions fetched per repository through GraphQL to resolve a Discussion notification's page.
    public var discussionsPerQuery: Int = 50
    /// GitHub keeps this many events per user; reading that many without reaching the watermark means older events
    /// are gone.
    public var eventHistoryLimit: Int = 300
    /// … and only this far back (30 days since 2025-01-30, 90 before): an account not synced for longer records the
    /// events between its watermark and this age as a gap.
    public var eventHistoryAge: Duration = .seconds(30 * 86_400)
    /// After `/notifications` refused an account's token (403), it is asked again only this much later: the refusal
    /// is about the token's type and will not pass by itself, so asking every sync would only spend quota.
    public var notificationsRefusalRetry: Duration = .seconds(24 * 3600)
    /// How many gap markers the state keeps.
    public var gapLimit: Int = 50

    public init(baseURL: String = "https://api.github.com") {
        self.baseURL = baseURL
    }

    /// GitHub's GraphQL endpoint on the configured host: `https://api.github.com/graphql`, or `/api/graphql` for a
    /// GitHub Enterprise Server whose REST base ends in `/api/v3`. The token goes nowhere else.
    public var graphQLURL: String {
        let trimmed = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        if trimmed.hasSuffix("/api/v3") { return String(trimmed.dropLast("/v3".count)) + "/graphql" }
        return trimmed + "/graphql"
    }

    /// The web origin of pages linked from activities (`https://github.com`); nil derives it from `baseURL`: GitHub's
    /// for `api.github.com` and for any host that is not a GitHub Enterprise Server (`…/api/v3`), whose web pages
    /// are on the same host without the API path.
    public var webBaseURL: String? = nil

    /// The web origin actually used when a page must be built from a repository and a number.
    public var effectiveWebBaseURL: String {
        if let webBaseURL { return webBaseURL.hasSuffix("/") ? String(webBaseURL.dropLast()) : webBaseURL }
        let trimmed = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        if trimmed.hasSuffix("/api/v3") { return String(trimmed.dropLast("/api/v3".count)) }
        return "https://github.com"
    }

    /// The token endpoint actually used for refreshes.
    public var effectiveTokenURL: String {
        if let tokenURL { return tokenURL }
        let trimmed = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        if trimmed == "https://api.github.com" { return "https://github.com/login/oauth/access_token" }
        return trimmed + "/login/oauth/access_token"
    }
}
