import Foundation
import IntegrationCatalog
import Logging
import SyncModel

/// One sync of one account: notifications, then the user's events, then the new state.
///
/// The two endpoints run one after the other so that a rejected token costs exactly one request. This file holds the
/// run's entry, what its phases share and the order they run in; each phase is an extension in a file of its own:
/// `+Notifications` (the phase in order), `+NotificationPager`, `+Subjects`, `+NotificationActivity`,
/// `+Discussions`, `+ThreadVersionRecovery`, `+Events` and `+Watermarks` (where the next sync starts).
struct SyncRun {
    let client: GitHubClient
    let logger: Logger
    let request: SyncRequest
    let credentials: AccountCredentials
    /// Notification listings are pinned to `before=started`; threads updated after it wait for the next sync.
    let started: Date
    var state: GitHubState
    var activities: [Activity] = []
    var recent: RecentIds
    var problems: [String] = []
    /// Subjects this sync already loaded, by URL: a pull request a notification needed serves its events too.
    var fetched: [String: FetchResult] = [:]

    var configuration: GitHubConfiguration { client.configuration }
    var isResync: Bool { request.since != nil }
    var deadline: Date { request.deadline }

    init(
        client: GitHubClient, logger: Logger, request: SyncRequest, state: GitHubState,
        credentials: AccountCredentials, started: Date
    ) {
        self.client = client
        var logger = logger
        logger[metadataKey: "accountId"] = "\(request.accountId)"
        self.logger = logger
        self.request = request
        self.state = state
        self.credentials = credentials
        self.started = started
        // Stored as `{thread}:{updated_at}`; states written before that hold whole ids (and event ids, which
        // `eventIds` replaces).
        let notificationPrefix = Self.notificationIdPrefix
        let keys = state.recentIds.compactMap { id -> String? in
            if id.hasPrefix(notificationPrefix) { return String(id.dropFirst(notificationPrefix.count)) }
            return id.hasPrefix("github:") ? nil : id
        }
        self.recent = RecentIds(keys, limit: client.configuration.recentIdLimit)
    }

    /// Why a phase stopped the whole sync.
    enum Stop: Error {
        case reauth(String)
        case halted(reason: String, retryAfter: Date?)

        init(_ error: GitHubError) {
            if error.isUnauthorized {
                self = .reauth(error.description)
            } else {
                self = .halted(reason: error.description, retryAfter: error.retryAfter)
            }
        }
    }

    mutating func run() async -> SyncOutcome.Status {
        var status: SyncOutcome.Status
        do throws(Stop) {
            if state.username == nil { try await learnUsername() }
            try await syncNotifications()
            try await syncEvents()
            state.needsReauth = false
            status = problems.isEmpty ? .complete : .partial(reason: problems.joined(separator: "; "), retryAfter: nil)
        } catch {
            switch error {
            case .reauth(let reason):
                state.needsReauth = true
                status = .needsReauth(reason: reason)
            case .halted(let reason, let retryAfter):
                status = .partial(reason: (problems + [reason]).joined(separator: "; "), retryAfter: retryAfter)
            }
        }
        state.recentIds = prunedRecentIds()
        if state.gaps.count > configuration.gapLimit {
            state.gaps.removeFirst(state.gaps.count - configuration.gapLimit)
        }
        return status
    }

    private mutating func learnUsername() async throws(Stop) {
        let user: GitHubAccount?
        do {
            (user, _) = try await client.getJSON(
                GitHubAccount.self, client.apiURL("/user"), credentials: credentials, deadline: deadline)
        } catch {
            throw Stop(error)
        }
        guard let user else {
            throw Stop.halted(reason: "GET /user answered 304 without a request for it", retryAfter: nil)
        }
        state.username = user.login
    }

    /// When `X-Poll-Interval` lets this listing be read again; nil when it asks for no wait (0, or no header). A
    /// stored "now" would come back from the state rounded to the millisecond and could make an immediate next sync
    /// skip the read.
    static func nextPoll(after response: GitHubResponse) -> Date? {
        guard let interval = response.pollInterval, interval > 0 else { return nil }
        return Date().addingTimeInterval(Double(interval))
    }

    mutating func emit(_ activity: Activity) {
        activities.append(activity)
        recent.insert(listingKey(activity.id))
    }

    /// A notification emitted without its subject: recorded as a gap, so the degraded text is not a silent loss.
    mutating func emitFallback(_ activity: Activity, thread: String, at updatedAt: Date) {
        state.gaps.append(.init(from: updatedAt, to: updatedAt, source: "subject:\(thread)"))
        emit(activity)
    }

    /// Notification activity ids: `github:notification:{thread}:{updated_at}`, one per version of a thread.
    static let notificationIdPrefix = "github:notification:"
    static let eventIdPrefix = "github:event:"

    static func notificationId(thread: String, updatedAt: String) -> String {
        "\(notificationIdPrefix)\(thread):\(updatedAt)"
    }

    /// `{thread}:{updated_at}` of a notification activity id, as the listing dedupes them.
    func listingKey(_ id: String) -> String {
        String(id.dropFirst(Self.notificationIdPrefix.count))
    }
}

/// The URL when it is a web link (http or https); nil otherwise, so an odd value never reaches a record.
func webURLOrNil(_ url: String) -> String? {
    url.hasPrefix("https://") || url.hasPrefix("http://") ? url : nil
}

func later(_ a: Date?, _ b: Date) -> Date { a.map { max($0, b) } ?? b }
func earlier(_ a: Date?, _ b: Date) -> Date { a.map { min($0, b) } ?? b }

/// Recently emitted ids, bounded, oldest dropped first.
struct RecentIds {
    private(set) var ids: [String]
    private var set: Set<String>
    let limit: Int

    init(_ ids: [String], limit: Int) {
        self.limit = max(1, limit)
        self.ids = Array(ids.suffix(self.limit))
        self.set = Set(self.ids)
    }

    func contains(_ id: String) -> Bool { set.contains(id) }

    mutating func insert(_ id: String) {
        guard set.insert(id).inserted else { return }
        ids.append(id)
        if ids.count > limit {
            let overflow = ids.count - limit
            for old in ids.prefix(overflow) { set.remove(old) }
            ids.removeFirst(overflow)
        }
    }
}
