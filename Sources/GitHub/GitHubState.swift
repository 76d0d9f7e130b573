public import Foundation
public import SyncModel

/// What one account's GitHub sync remembers between syncs (the `data` of its state record).
///
/// `lastSyncTime`, `lastUserEventTime` and `username` keep the reference integration's names so existing
/// states still read. Unlike the reference, the two times are watermarks: the newest `updated_at` /
/// `created_at` actually processed, never the wall clock, so nothing that changed during a sync or failed to
/// load is skipped.
public struct GitHubState: Codable, Sendable, Hashable {
    /// A stretch of time whose activity could not be read (GitHub keeps only 300 events / 90 days, or a sync hit
    /// its page limit), recorded instead of pretending coverage.
    public struct Gap: Codable, Sendable, Hashable {
        public var from: Date
        public var to: Date
        /// `events` or `notifications`.
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
    /// GitHub's `X-Poll-Interval`: the endpoints are not polled before these times.
    public var nextNotificationsPoll: Date?
    public var nextEventsPoll: Date?
    /// The token was rejected and could not be refreshed.
    public var needsReauth: Bool
    public var gaps: [Gap]
    /// Recently emitted activity ids, oldest first: repeats from the re-read overlap are dropped.
    public var recentIds: [String]

    public init(
        lastSyncTime: Date? = nil, lastUserEventTime: Date? = nil, username: String? = nil,
        notificationsLastModified: String? = nil, eventsETag: String? = nil, nextNotificationsPoll: Date? = nil,
        nextEventsPoll: Date? = nil, needsReauth: Bool = false, gaps: [Gap] = [], recentIds: [String] = []
    ) {
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
    }

    private enum CodingKeys: String, CodingKey {
        case lastSyncTime, lastUserEventTime, username, notificationsLastModified, eventsETag
        case nextNotificationsPoll, nextEventsPoll, needsReauth, gaps, recentIds
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
        nextEventsPoll = try container.decodeIfPresent(Date.self, forKey: .nextEventsPoll)
        needsReauth = try container.decodeIfPresent(Bool.self, forKey: .needsReauth) ?? false
        gaps = try container.decodeIfPresent([Gap].self, forKey: .gaps) ?? []
        recentIds = try container.decodeIfPresent([String].self, forKey: .recentIds) ?? []
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
