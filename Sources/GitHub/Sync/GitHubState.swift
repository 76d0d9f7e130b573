public import Foundation
public import SyncModel

/// What one account's GitHub sync remembers between syncs (the `data` of its state record).
///
/// `lastSyncTime`, `lastUserEventTime` and `username` keep the reference integration's names so existing
/// states still read. Unlike the reference, the two times are watermarks: the newest `updated_at` /
/// `created_at` actually processed, never the wall clock, so nothing that changed during a sync or failed to
/// load is skipped.
///
/// Kept lean because the worker writes it on every job: ids behind the watermarks are pruned, and empty or default
/// fields are left out of the JSON, so a typical record is a few hundred bytes.
public struct GitHubState: Codable, Sendable, Hashable {
    /// A stretch of time whose activity could not be read (GitHub keeps only 300 events / 30 days, or a sync hit
    /// its page limit), recorded instead of pretending coverage.
    public struct Gap: Codable, Sendable, Hashable {
        public var from: Date
        public var to: Date
        /// `events`, `notifications`, or `subject:{thread id}` for a notification emitted without its subject
        /// after the subject kept failing.
        public var source: String

        public init(from: Date, to: Date, source: String) {
            self.from = from
            self.to = to
            self.source = source
        }
    }

    /// Notifications watermark: newest thread `updated_at` processed.
    public var lastSyncTime: Date?
    /// Events watermark: newest event `created_at` processed.
    public var lastUserEventTime: Date?
    /// The account's login, learned from `GET /user` on the first sync.
    public var username: String?
    /// `Last-Modified` of the last complete notifications read, sent back as `If-Modified-Since`.
    public var notificationsLastModified: String?
    /// `ETag` of the last complete events read, sent back as `If-None-Match`.
    public var eventsETag: String?
    /// The `before` (whole seconds) of the last notifications listing read to its end or answered 304: a thread version
    /// made before it was listable then, so versions GitHub no longer lists are recovered only from here on (a
    /// thread first notified now may have had comments before the user was subscribed to it).
    public var lastListingBefore: Date?
    /// GitHub's `X-Poll-Interval`: the endpoints are not polled before these times.
    public var nextNotificationsPoll: Date?
    public var nextEventsPoll: Date?
    /// When `/notifications` last refused this account's token (403: GitHub App, installation and fine-grained tokens
    /// may not read notifications); it is asked again only after `notificationsRefusalRetry`.
    public var notificationsRefused: Date?
    /// The token was rejected and could not be refreshed.
    public var needsReauth: Bool
    public var gaps: [Gap]
    /// Recently emitted notifications as `{thread id}:{updated_at}` (their activity id without the
    /// `github:notification:` prefix), oldest first: repeats from the re-read overlap are dropped. Those whose
    /// `updated_at` is behind `lastSyncTime` minus the overlap are pruned (they are never listed again). Whole ids
    /// in an older state are read too.
    public var recentIds: [String]
    /// Ids of the kept events (`github:event:` without the prefix) created within the event lag horizon below
    /// `lastUserEventTime`: an event not among them is new, however late it appeared. nil in a state written before
    /// events were compared by id.
    public var eventIds: [String]?
    /// Notification threads whose subject failed, by thread id: after a few syncs or hours they are emitted anyway.
    /// Keyed by thread, not by version, so a thread GitHub re-bumps while its subject keeps failing still counts
    /// towards giving up.
    public var stuck: [String: StuckItem]

    /// A notification thread whose subject keeps failing to load.
    public struct StuckItem: Codable, Sendable, Hashable {
        /// When the thread's subject first failed (any version).
        public var since: Date
        /// Syncs in which it failed (any version).
        public var failures: Int
        /// Listed versions whose subject failed and that are not emitted yet (the current one too), with what their
        /// notification said: once the thread moves on GitHub never lists them again, so they are emitted from this
        /// data alone when the thread settles or is given up.
        public var superseded: [Version]

        public init(since: Date, failures: Int, superseded: [Version] = []) {
            self.since = since
            self.failures = failures
            self.superseded = superseded
        }

        private enum CodingKeys: String, CodingKey { case since, failures, superseded }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(since, forKey: .since)
            try container.encode(failures, forKey: .failures)
            if !superseded.isEmpty { try container.encode(superseded, forKey: .superseded) }
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            since = try container.decode(Date.self, forKey: .since)
            failures = try container.decode(Int.self, forKey: .failures)
            superseded = try container.decodeIfPresent([Version].self, forKey: .superseded) ?? []
        }

        /// One listed version of the thread: what its fallback activity needs.
        public struct Version: Codable, Sendable, Hashable {
            public var updatedAt: String
            public var reason: String
            public var type: String
            public var title: String?
            public var url: String?
            public var repo: String
            public var repoURL: String?

            public init(
                updatedAt: String, reason: String, type: String, title: String?, url: String?, repo: String,
                repoURL: String?
            ) {
                self.updatedAt = updatedAt
                self.reason = reason
                self.type = type
                self.title = title
                self.url = url
                self.repo = repo
                self.repoURL = repoURL
            }
        }
    }

    public init(
        lastSyncTime: Date? = nil, lastUserEventTime: Date? = nil, username: String? = nil,
        notificationsLastModified: String? = nil, eventsETag: String? = nil, nextNotificationsPoll: Date? = nil,
        nextEventsPoll: Date? = nil, needsReauth: Bool = false, gaps: [Gap] = [], recentIds: [String] = [],
        eventIds: [String]? = nil, stuck: [String: StuckItem] = [:], notificationsRefused: Date? = nil,
        lastListingBefore: Date? = nil
    ) {
        self.notificationsRefused = notificationsRefused
        self.lastListingBefore = lastListingBefore
        self.lastSyncTime = lastSyncTime
        self.lastUserEventTime = lastUserEventTime
        self.username = username
        self.notificationsLastModified = notificationsLastModified
        self.eventsETag = eventsETag
        self.nextNotificationsPoll = nextNotificationsPoll
        self.nextEventsPoll = nextEventsPoll
        self.needsReauth = needsReauth
        self.gaps = gaps
        self.recentIds = recentIds
        self.eventIds = eventIds
        self.stuck = stuck
    }

    private enum CodingKeys: String, CodingKey {
        case lastSyncTime, lastUserEventTime, username, notificationsLastModified, eventsETag
        case nextNotificationsPoll, nextEventsPoll, needsReauth, gaps, recentIds, eventIds, stuck
        case notificationsRefused, lastListingBefore
    }

    /// Leaves out what is empty or default, so an idle account's state is a handful of fields.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(lastSyncTime, forKey: .lastSyncTime)
        try container.encodeIfPresent(lastUserEventTime, forKey: .lastUserEventTime)
        try container.encodeIfPresent(username, forKey: .username)
        try container.encodeIfPresent(notificationsLastModified, forKey: .notificationsLastModified)
        try container.encodeIfPresent(eventsETag, forKey: .eventsETag)
        try container.encodeIfPresent(nextNotificationsPoll, forKey: .nextNotificationsPoll)
        try container.encodeIfPresent(lastListingBefore, forKey: .lastListingBefore)
        try container.encodeIfPresent(notificationsRefused, forKey: .notificationsRefused)
        try container.encodeIfPresent(nextEventsPoll, forKey: .nextEventsPoll)
        if needsReauth { try container.encode(needsReauth, forKey: .needsReauth) }
        if !gaps.isEmpty { try container.encode(gaps, forKey: .gaps) }
        if !recentIds.isEmpty { try container.encode(recentIds, forKey: .recentIds) }
        // An empty list is still written: it says "ids are compared", unlike a missing one (an older state).
        try container.encodeIfPresent(eventIds, forKey: .eventIds)
        if !stuck.isEmpty { try container.encode(stuck, forKey: .stuck) }
    }

    /// Every field is optional on the wire, so a reference state (`lastSyncTime`, `lastUserEventTime`,
    /// `username` only) decodes.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lastSyncTime = try container.decodeIfPresent(Date.self, forKey: .lastSyncTime)
        lastUserEventTime = try container.decodeIfPresent(Date.self, forKey: .lastUserEventTime)
        username = try container.decodeIfPresent(String.self, forKey: .username)
        notificationsLastModified = try container.decodeIfPresent(String.self, forKey: .notificationsLastModified)
        eventsETag = try container.decodeIfPresent(String.self, forKey: .eventsETag)
        nextNotificationsPoll = try container.decodeIfPresent(Date.self, forKey: .nextNotificationsPoll)
        lastListingBefore = try container.decodeIfPresent(Date.self, forKey: .lastListingBefore)
        notificationsRefused = try container.decodeIfPresent(Date.self, forKey: .notificationsRefused)
        nextEventsPoll = try container.decodeIfPresent(Date.self, forKey: .nextEventsPoll)
        needsReauth = try container.decodeIfPresent(Bool.self, forKey: .needsReauth) ?? false
        gaps = try container.decodeIfPresent([Gap].self, forKey: .gaps) ?? []
        recentIds = try container.decodeIfPresent([String].self, forKey: .recentIds) ?? []
        eventIds = try container.decodeIfPresent([String].self, forKey: .eventIds)
        stuck = try container.decodeIfPresent([String: StuckItem].self, forKey: .stuck) ?? [:]
    }

    /// Reads a state record's `data`; nil or a non-object means "first sync".
    public init(json: JSONValue?) throws {
        guard let json, case .object = json else {
            self.init()
            return
        }
        self = try json.decode(as: GitHubState.self)
    }

    public var json: JSONValue {
        // Encoding plain values into JSON cannot fail.
        (try? JSONValue(encoding: self)) ?? .object([:])
    }
}
