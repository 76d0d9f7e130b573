import Crypto
public import Foundation
import Hummingbird
public import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A simulated GitHub REST API on loopback, for tests, dev mode and benchmarks.
///
/// Why it exists: the GitHub integration must be shown to lose nothing, spend no quota on unchanged accounts and
/// never send a token elsewhere, and none of that can be asserted against the real GitHub. The simulator serves a
/// deterministic world (same seed, same history, same ground truth), injects the faults real GitHub shows, and
/// records every request so tests can assert on what a client actually did.
///
/// GitHub as it serves today, by default (each line a habit of the live API that once cost us activities):
/// - One notification thread per subject and user, re-bumped by new activity (`threadBumps`, on by default): same
///   thread id, a new `updated_at`, the listing shows each thread's current version only. The ground truth lists
///   every version with when it was superseded, and `polledTruth` says which of them polls of the account could
///   see, and which superseded ones a client can still recover from the subject's comments and `closed_at`. In the
///   generated world every comment someone else makes on an issue or pull request is a version of the user's thread
///   with a kept reason (`comment`, `mention`, or a kept reason that sticks): `subscribed` notifications are about
///   new issues and pull requests only and never re-bump a thread. Off, every generated notification gets a thread
///   and a subject of its own (the tidy world some tests still ask for).
/// - Events show up in the events feed a while after they happened, when `eventLag` says so (off by default: a
///   test that asserts on a first sync's events would otherwise have to wait for them).
/// - `/users/{u}/events` payloads trimmed as since 2025-10-07: `PullRequestEvent`'s `pull_request` is only `url`,
///   `id`, `number`, `head`, `base` (no `title`, `html_url`, `body`, `user`); `PushEvent` has no `commits`, `size`
///   or `distinct_size`. `fullEventPayloads` serves the OpenAPI examples' whole pull request instead, for a test
///   about that old shape only.
/// - The events feed keeps the newest `eventCap` (300) events and none older than `eventRetention` (30 days).
/// - ETags differ per token (the same body has another ETag for another token).
/// - A re-bumped thread keeps its reason (`assign`, `review_requested`, `mention`, `team_mention`,
///   `author`) when a later bump is only a comment; the truth tells that version as the comment it is.
/// - Issues say who closed them (`closed_by`), merged pull requests who merged them (`merged_by`).
/// - The user's own reviews: `PullRequestReviewEvent` with a trimmed `pull_request` and the `review`;
///   `DiscussionEvent` with its `discussion` (only when a test adds one with `addEvent`; none is generated).
/// - Commit threads (reasons `author`, `mention`, `comment`, `subscribed`) beside Release threads.
/// - `latest_comment_url` names the subject's newest comment when polled, not the one that made the thread's version
///   (a reply the user wrote later moves it); `GET /repos/{o}/{r}/issues|pulls/{n}/comments?since` lists them.
///
/// Modelled when a test asks (`AccessRules.swift`), since no generated account meets them: subjects of a repository
/// answering 403 with `X-GitHub-SSO` (SAML SSO), 403, 404 or 410 (`refuseSubjects(in:status:sso:)`); a token that
/// `/notifications` refuses with 403 "Resource not accessible by integration" (`setTokenKind(_:for:)`). Every
/// simulated token is treated as a classic one unless a test says otherwise, although its `ghu_` prefix is a GitHub
/// App user token's.
///
/// Not modelled (yet), though GitHub does it: Commit and Release subjects that can be fetched (their threads'
/// `subject.url` answers 404); review comment events with a trimmed pull request (GitHub's changelog names only
/// `PullRequestEvent` and `PullRequestReviewEvent`); an issue's events and timeline (`/issues/{n}/events`,
/// `/timeline`: who assigned, requested a review, mentioned in the body), so a version made by one of those and
/// superseded before any poll cannot be recovered; thread subscriptions (`/notifications/threads/{id}/subscription`);
/// edited comments (a comment's `updated_at` is its `created_at`); more than one page of a comment list;
/// notifications about a subject to every participant (a test-made comment bumps only the thread it names);
/// the GraphQL budget apart from the REST quota.
///
/// Endpoints (all need `Authorization: Bearer T` or `token T`, except the token exchange):
/// - `GET /user`, `GET /users/{login}`, `GET /rate_limit` (free)
/// - `GET /notifications?all&participating&since&before&per_page&page` — newest first, `per_page` ≤ 50,
///   `Link` (absolute, on `baseURL`), `Last-Modified` (newest visible `updated_at`, or when a test last changed
///   the visible list if later), `If-Modified-Since` → 304 when nothing changed after it (for the whole list, so
///   send it on the first page only), `X-Poll-Interval`. `since` is inclusive, `before` exclusive. Like GitHub's,
///   these dates have one-second resolution.
/// - `GET /notifications/threads/{id}` (only the token owner's threads)
/// - `GET /repos/{owner}/{repo}/issues/{n}`, `/pulls/{n}`, `/issues/comments/{id}`, `/pulls/comments/{id}` —
///   strong `ETag`, `If-None-Match` → 304
/// - `GET /repos/{owner}/{repo}/issues/{n}/comments`, `/pulls/{n}/comments` — `since`, `per_page` ≤ 100, oldest
///   first, first page only; `ETag`
/// - `GET /users/{login}/events?per_page&page` — newest first, `per_page` ≤ 100, only the newest `eventCap`
///   within `eventRetention` reachable, `ETag`/`If-None-Match`, `Link`
/// - `POST /graphql` — only `repository(owner, name) { discussions(first, orderBy UPDATED_AT DESC) { nodes { number
///   title url body updatedAt author { login } comments(last: 1) { nodes { url body author { login } } } } } }`, with
///   `owner`, `name` and `first` passed as variables; counted against the same quota
/// - `POST /login/oauth/access_token` — `grant_type=refresh_token&refresh_token=…` (form or JSON); JSON answer
///   unless `Accept` asks for a form; a bad token gives GitHub's 200 `{"error":"bad_refresh_token",…}`
/// - `/_sim/…` admin endpoints: see `Admin.swift`.
///
/// Every API answer carries `x-ratelimit-limit/remaining/reset/used/resource`. Quota is kept per account (as on
/// GitHub, all tokens of one user share it); 304s, 401s, limit answers and injected 5xx are free.
///
/// - Important: It binds to loopback only and is not hardened; never expose it.
public final class GitHubSimulator: Sendable {
    public let configuration: SimulatorConfiguration
    let logger: Logger
    let world: Mutex<WorldState>
    let credentials: Mutex<Credentials>
    let log: Mutex<RequestLog>
    let faults: Mutex<FaultQueue>
    private let server = Mutex<ServerHandle?>(nil)
    let linkBase = Mutex<String?>(nil)
    let pageHooks = Mutex<[PageHook]>([])
    let access = Mutex(AccessRules())

    /// An action due after some number of served notifications pages of one account.
    struct PageHook: Sendable {
        var user: Int
        var remaining: Int
        var action: @Sendable () -> Void
    }

    /// Creates the world (lazily: nothing per user is generated until it is first asked for).
    public init(configuration: SimulatorConfiguration = .init(), logger: Logger = Logger(label: "github-simulator")) {
        self.configuration = configuration
        self.logger = logger
        let params = WorldParameters(configuration)
        self.world = Mutex(WorldState(params: params))
        self.credentials = Mutex(Credentials(seed: configuration.seed, users: params.users))
        self.log = Mutex(RequestLog(limit: max(1, configuration.requestLogLimit)))
        self.faults = Mutex(FaultQueue())
    }

    // MARK: Lifecycle

    /// Binds the HTTP server and returns once it accepts connections.
    /// - Throws: `SimulatorError` when the address cannot be bound.
    public func start() async throws {
        if port != 0 { return }
        let (stream, continuation) = AsyncStream<Result<Int, any Error>>.makeStream()
        let responder = CallbackResponder<SimulatorRequestContext> { [self] request, context in
            try await self.respond(to: request, context: context)
        }
        let appLogger = logger
        let app = Application(
            responder: responder,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                continuation.yield(.success(channel.localAddress?.port ?? 0))
            },
            logger: appLogger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: appLogger))
        let task = Task {
            do {
                try await group.run()
                continuation.yield(.failure(SimulatorError.bindFailed("server stopped before it was running")))
            } catch {
                continuation.yield(.failure(error))
            }
            continuation.finish()
        }
        var port: Int?
        for await result in stream {
            switch result {
            case .success(let bound): port = bound
            case .failure(let error): throw SimulatorError.bindFailed("\(error)")
            }
            break
        }
        guard let port else { throw SimulatorError.bindFailed("no port reported") }
        server.withLock { $0 = ServerHandle(group: group, task: task, port: port) }
        let base = baseURL
        world.withLock { world in
            if world.baseURL != base {
                world.baseURL = base
                world.dropEncodedBodies()
            }
        }
        logger.info(
            "GitHub simulator listening",
            metadata: ["bound": "\(boundURL)", "url": "\(base)", "users": "\(configuration.users)"])
    }

    /// The port the server is bound to; 0 before `start()`.
    public var port: Int { server.withLock { $0?.port ?? 0 } }

    /// `http://127.0.0.1:PORT` (or `publicBaseURL`), without a trailing slash. Give this to a client as its API
    /// base URL.
    public var baseURL: String {
        if let base = configuration.publicBaseURL { return base.hasSuffix("/") ? String(base.dropLast()) : base }
        return boundURL
    }

    /// `http://{host}:{port}` as bound, whatever `publicBaseURL` says.
    public var boundURL: String { "http://\(configuration.host):\(port)" }

    /// Stops serving; in-flight requests are given a few seconds to finish.
    public func stop() async {
        guard
            let handle = server.withLock({ value -> ServerHandle? in
                defer { value = nil }
                return value
            })
        else { return }
        await handle.group.triggerGracefulShutdown()
        let task = handle.task
        let watchdog = Task {
            try await Task.sleep(for: .seconds(5))
            task.cancel()
        }
        _ = await task.result
        watchdog.cancel()
    }

    // MARK: Accounts

    /// Every simulated account with its current token pair.
    public var users: [SimulatedUser] {
        let count = world.withLock { $0.params.users }
        return credentials.withLock { creds in (1...count).map { creds.user($0) } }
    }

    /// One account by login, or nil.
    public func user(login: String) -> SimulatedUser? {
        guard let index = world.withLock({ $0.accountIndex(login: login) }) else { return nil }
        return credentials.withLock { $0.user(index) }
    }

    /// Makes the account's current access token invalid: the next request with it gets 401 "Bad credentials".
    /// The refresh token keeps working, as with an expired GitHub App user token.
    public func expireToken(login: String) throws {
        let index = try accountIndex(login)
        credentials.withLock { $0.expireAccessToken(index) }
    }

    /// Issues the account a new token pair and makes the old access and refresh tokens stop working, as a person
    /// reconnecting the account (a new OAuth authorization) does.
    /// - Returns: the account with its new pair.
    @discardableResult
    public func reconnect(login: String) throws -> SimulatedUser {
        let index = try accountIndex(login)
        return credentials.withLock { credentials in
            credentials.reissue(index)
            return credentials.user(index)
        }
    }

    func accountIndex(_ login: String) throws -> Int {
        guard let index = world.withLock({ $0.accountIndex(login: login) }) else {
            throw SimulatorError.unknownUser(login)
        }
        return index
    }

    // MARK: Faults

    /// Forces `fault` onto the next `count` API requests (optionally only those whose path starts with `pathPrefix`).
    /// Injected faults are used before any random fault.
    public func injectFault(_ fault: Fault, count: Int = 1, pathPrefix: String? = nil) {
        faults.withLock { $0.pending.append(.init(fault: fault, remaining: max(0, count), pathPrefix: pathPrefix)) }
    }

    /// Makes `Link` pagination URLs name another origin (`localhost:PORT`, or a full `https://host:port`), to prove
    /// a client never follows a next link off its configured API host. nil restores the simulator's own base URL.
    public func setPaginationLinkHost(_ host: String?) {
        linkBase.withLock { $0 = host.map { $0.contains("://") ? $0 : "http://\($0)" } }
    }

    /// Drops every injected fault that has not fired yet.
    public func clearFaults() {
        faults.withLock { $0.pending.removeAll() }
    }

    // MARK: Observation

    /// Every API request so far (oldest first; admin `/_sim` requests are not recorded).
    public func requests() -> [RecordedRequest] { log.withLock { Array($0.entries) } }

    /// Every distinct `Host` header ever seen, even after old requests were forgotten.
    public func hostsSeen() -> Set<String> { log.withLock { $0.hosts } }

    /// Requests counted against the quota of the token's account in the current hour; 0 for unknown tokens.
    public func quotaUsed(token: String) -> Int {
        let now = Timestamp.now()
        return credentials.withLock { creds in
            creds.owner(ofAnyToken: token).map {
                creds.quota(for: $0, limit: configuration.quotaPerHour, now: now).used
            } ?? 0
        }
    }

    /// What the token's account has left this hour.
    public func quotaRemaining(token: String) -> Int {
        let now = Timestamp.now()
        return credentials.withLock { creds in
            creds.owner(ofAnyToken: token).map {
                creds.quota(for: $0, limit: configuration.quotaPerHour, now: now).remaining
            } ?? configuration.quotaPerHour
        }
    }

    /// Quota of an account by login (the same numbers `/_sim/quota` serves).
    public func quota(login: String) throws -> QuotaSnapshot {
        let index = try accountIndex(login)
        let now = Timestamp.now()
        return credentials.withLock { $0.quota(for: index, limit: configuration.quotaPerHour, now: now) }
    }

    /// What a correct integration must have produced for `login` from activity between `from` and `to`
    /// (inclusive, capped at now). See `Truth.swift` for the rules.
    public func truth(login: String, from: Date, to: Date) throws -> [ExpectedActivity] {
        let index = try accountIndex(login)
        let now = Timestamp.now()
        let upper = min(Timestamp.seconds(to), now)
        let lower = Int64(from.timeIntervalSince1970.rounded(.up))
        return world.withLock { world in
            world.materialize(index, now: now)
            return world.truth(user: index, from: lower, to: upper)
        }
    }
}

extension GitHubSimulator {
    /// `truth(login:from:to:)` narrowed to what polls of the account up to `to` could see (see `Truth.swift`):
    /// `seen` is everything a correct poller may have emitted, `required` what it must have.
    public func polledTruth(login: String, from: Date, to: Date) throws -> PolledTruth {
        let index = try accountIndex(login)
        let nowDate = Date()
        let now = Timestamp.seconds(nowDate)
        let upper = min(Timestamp.seconds(to), now)
        let lower = Int64(from.timeIntervalSince1970.rounded(.up))
        return world.withLock { world in
            world.materialize(index, now: now)
            return world.polledTruth(
                user: index, from: lower, to: upper, until: min(to, nowDate).timeIntervalSince1970,
                now: nowDate.timeIntervalSince1970)
        }
    }
}

extension GitHubSimulator {
    /// When `login`'s notifications were listed (served or 304), oldest first: the polls `polledTruth` counts.
    public func listingTimes(login: String) throws -> [Date] {
        let index = try accountIndex(login)
        return world.withLock { world in world.account(index).listings.map { Date(timeIntervalSince1970: $0.time) } }
    }
}

/// A running server: the service group that owns the Hummingbird application and the task running it.
struct ServerHandle: Sendable {
    let group: ServiceGroup
    let task: Task<Void, Never>
    let port: Int
}

/// The numbers behind the `x-ratelimit-*` headers.
public struct QuotaSnapshot: Sendable, Hashable, Codable {
    public var limit: Int
    public var used: Int
    public var remaining: Int
    /// Epoch seconds when the window resets.
    public var reset: Int64
}

/// Tokens and quota windows. Tokens derive from the seed, so a restarted simulator with the same seed accepts
/// the same first tokens.
struct Credentials {
    let seed: UInt64
    private var current: [Int: (access: String, refresh: String, generation: Int)] = [:]
    private var access: [String: Int] = [:]
    private var refresh: [String: Int] = [:]
    private var retired: [String: Int] = [:]
    private var windows: [Int: (start: Int64, used: Int)] = [:]

    init(seed: UInt64, users: Int) {
        self.seed = seed
        for user in 1...users { issue(user, generation: 0) }
    }

    private static func token(_ prefix: String, seed: UInt64, user: Int, generation: Int, kind: String) -> String {
        let digest = SHA256.hash(data: Array("\(kind):\(seed):\(user):\(generation)".utf8))
        return prefix + JSON.hex(digest.prefix(18))
    }

    private mutating func issue(_ user: Int, generation: Int) {
        let accessToken = Self.token("ghu_sim_", seed: seed, user: user, generation: generation, kind: "access")
        let refreshToken = Self.token("ghr_sim_", seed: seed, user: user, generation: generation, kind: "refresh")
        current[user] = (accessToken, refreshToken, generation)
        access[accessToken] = user
        refresh[refreshToken] = user
    }

    func user(_ index: Int) -> SimulatedUser {
        let pair = current[index] ?? ("", "", 0)
        return SimulatedUser(
            login: "user\(index)", id: WorldState.userId(index, seed: seed), token: pair.access,
            refreshToken: pair.refresh)
    }

    func owner(ofValidToken token: String) -> Int? { access[token] }

    func owner(ofAnyToken token: String) -> Int? { access[token] ?? retired[token] ?? refresh[token] }

    mutating func expireAccessToken(_ user: Int) {
        guard let pair = current[user], access.removeValue(forKey: pair.access) != nil else { return }
        retired[pair.access] = user
    }

    /// A new pair for `user`, whatever its refresh token; the old access and refresh tokens stop working.
    mutating func reissue(_ user: Int) {
        guard let pair = current[user] else { return }
        refresh.removeValue(forKey: pair.refresh)
        access.removeValue(forKey: pair.access)
        retired[pair.access] = user
        retired[pair.refresh] = user
        issue(user, generation: pair.generation + 1)
    }

    /// Exchanges a refresh token for a new pair; the old access and refresh tokens stop working.
    mutating func refresh(_ refreshToken: String) -> SimulatedUser? {
        guard let user = refresh[refreshToken], let pair = current[user], pair.refresh == refreshToken else {
            return nil
        }
        reissue(user)
        return self.user(user)
    }

    func quota(for user: Int, limit: Int, now: Int64) -> QuotaSnapshot {
        guard let window = windows[user], now < window.start + 3_600 else {
            return QuotaSnapshot(limit: limit, used: 0, remaining: limit, reset: now + 3_600)
        }
        return QuotaSnapshot(
            limit: limit, used: window.used, remaining: max(0, limit - window.used), reset: window.start + 3_600)
    }

    /// Counts one request; false (and nothing counted) when the hour's quota is spent.
    mutating func consume(_ user: Int, limit: Int, now: Int64) -> Bool {
        var window = windows[user] ?? (now, 0)
        if now >= window.start + 3_600 { window = (now, 0) }
        guard window.used < limit else {
            windows[user] = window
            return false
        }
        window.used += 1
        windows[user] = window
        return true
    }
}

struct RequestLog {
    let limit: Int
    var entries: [RecordedRequest] = []
    var dropped = 0
    var hosts: Set<String> = []

    init(limit: Int) { self.limit = limit }

    mutating func append(_ request: RecordedRequest) {
        if let host = request.host { hosts.insert(host) }
        entries.append(request)
        if entries.count > limit + limit / 4 {
            let excess = entries.count - limit
            entries.removeFirst(excess)
            dropped += excess
        }
    }
}

struct FaultQueue {
    struct Pending {
        var fault: Fault
        var remaining: Int
        var pathPrefix: String?
    }

    var pending: [Pending] = []
    var ordinal: UInt64 = 0

    /// The injected fault for a request on `path`, if one is due.
    mutating func take(path: String) -> Fault? {
        guard let index = pending.firstIndex(where: { $0.remaining > 0 && path.hasPrefix($0.pathPrefix ?? "") }) else {
            return nil
        }
        pending[index].remaining -= 1
        let fault = pending[index].fault
        pending.removeAll { $0.remaining <= 0 }
        return fault
    }

    mutating func nextOrdinal() -> UInt64 {
        ordinal += 1
        return ordinal
    }
}

extension GitHubSimulator {
    /// The ids of `login`'s superseded thread versions that a client can recover from the subject once a later
    /// version is listed (a comment or a close by someone else; `Truth.swift`'s rules). Any other superseded version
    /// handed to a sync whose output was rolled back is lost, as topics.md says.
    public func recoverableVersionIds(login: String) throws -> Set<String> {
        let index = try accountIndex(login)
        return world.withLock { Set($0.recoverableVersions(user: index).keys) }
    }

    /// Why a failing test's missing notification version was owed, in one line per version of its thread: when each
    /// version was current, what made it (reason, cause, the comment's author), whether a client can recover it from
    /// the subject (`Truth.swift`'s rules), when a page first delivered it; then the account's listings (time, since,
    /// before). For failure messages only; nil when `activityId` is no thread version of `login`.
    public func explainThreadVersion(login: String, activityId: String) throws -> String? {
        let index = try accountIndex(login)
        let parts = activityId.split(separator: ":")
        guard parts.count >= 3, parts[1] == "notification", let threadId = Int64(parts[2]) else { return nil }
        return world.withLock { world -> String? in
            let account = world.account(index)
            guard let thread = account.threads[threadId] else { return nil }
            let recoverable = world.recoverableVersions(user: index)
            func stamp(_ seconds: Double) -> String {
                seconds.isFinite ? String(format: "%.3f", seconds.truncatingRemainder(dividingBy: 1000)) : "-"
            }
            var lines = ["thread \(threadId) of \(login) (times: epoch seconds mod 1000)"]
            for version in thread.versions {
                let id = WorldState.notificationActivityId(thread: threadId, updatedAt: version.updatedAt)
                var made = "reason=\(version.reason) cause=\(version.cause ?? "-")"
                switch version.latest {
                case .none: made += " latest=none"
                case .subject: made += " latest=subject"
                case .comment(let comment):
                    let author = world.comments[comment]?.author.login ?? "?"
                    made += " latest=comment \(comment) by \(author)"
                }
                lines.append(
                    "\(id == activityId ? "*" : " ") \(id): current \(stamp(version.currentFrom))–"
                        + "\(stamp(version.supersededAt)) \(made) recoverable=\(recoverable[id] != nil) "
                        + "served=\(account.served[id].map(stamp) ?? "never")")
            }
            let listings = account.listings.map { listing in
                "\(stamp(listing.time))[since \(listing.since.map { stamp(Double($0)) } ?? "-") before "
                    + "\(listing.before.map { stamp(Double($0)) } ?? "-")]"
            }
            lines.append("listings: \(listings.joined(separator: " "))")
            return lines.joined(separator: "\n")
        }
    }
}
