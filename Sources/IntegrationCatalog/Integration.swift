public import Foundation
public import SyncModel

/// A source of activity, in the shape of the sync-integration SDK: `spec`, `setup`, `sync`.
///
/// The worker knows integrations only through this protocol and picks one by `key`, so adding a source means
/// adding a conformance, not touching the worker.
public protocol Integration: Sendable {
    /// The key jobs and accounts name, e.g. `github`.
    var key: String { get }

    /// The integration's spec document (name, key, schedule, auth, mcp), as the SDK's `spec` event returns it.
    func spec() -> JSONValue

    /// Turns an OAuth response into the account message the SDK's `setup` event returns.
    func setup(oauthResponse: JSONValue) async throws -> AccountSetup

    /// Runs one sync of one account.
    ///
    /// - Important: Must not throw for conditions the outcome can express (rejected token, rate limit, deadline):
    ///   those come back as `SyncOutcome.status` with the progress made so far in `state`, so nothing is lost.
    ///   Throw ``IntegrationError`` only when the job itself cannot be processed.
    func sync(_ request: SyncRequest) async throws -> SyncOutcome

    /// How many syncs of this integration a worker runs at once; its other jobs wait in the worker's queue without
    /// taking one of the worker's slots. Nil (the default): only the worker's `--concurrency` bounds them.
    var maxConcurrentSyncs: Int? { get }
}

extension Integration {
    public var maxConcurrentSyncs: Int? { nil }
}

public struct SyncRequest: Sendable {
    public var accountId: String
    public var config: JSONValue
    /// The integration state from the previous sync; nil on the first sync.
    public var state: JSONValue?
    /// A one-off re-read from this time (`accounts resync`).
    public var since: Date?
    /// Wall-clock time by which the sync must return, with whatever progress it has.
    public var deadline: Date
    /// The job's tick: the same on every re-run of the job, so an integration may derive stable values from it
    /// (external integrations date activities that carry no time with it). Nil outside a worker.
    public var scheduledAt: Date?
    /// Stores a refreshed config (a new token pair) durably; returns once it is stored.
    ///
    /// A refresh invalidates the old pair at once, so a new pair known only to this sync is lost with it when the
    /// job is cancelled, its partition revoked or its process killed before the output commits — and the account
    /// then needs a person to reconnect it. An integration that refreshes calls this right after the exchange and
    /// before it sends the new token anywhere; when it throws, the integration stops the sync (the pair still goes
    /// out in ``SyncOutcome/updatedConfig``). Nil outside a worker.
    public var saveRefreshedConfig: (@Sendable (JSONValue) async throws -> Void)?

    public init(
        accountId: String, config: JSONValue, state: JSONValue?, since: Date? = nil, deadline: Date,
        scheduledAt: Date? = nil, saveRefreshedConfig: (@Sendable (JSONValue) async throws -> Void)? = nil
    ) {
        self.accountId = accountId
        self.config = config
        self.state = state
        self.since = since
        self.deadline = deadline
        self.scheduledAt = scheduledAt
        self.saveRefreshedConfig = saveRefreshedConfig
    }
}

public struct SyncOutcome: Sendable {
    public enum Status: Sendable, Hashable {
        /// Everything due was read.
        case complete
        /// Stopped early (deadline, rate limit, a failing page); `state` holds the progress, and the rest is read
        /// by a later sync, not before `retryAfter`.
        case partial(reason: String, retryAfter: Date?)
        /// The token was rejected and could not be refreshed.
        case needsReauth(reason: String)
        /// The sync failed, but what it saved before failing is kept: a refreshed config (``updatedConfig``), which
        /// already replaced the old one at the provider. `state` is unchanged and there are no activities.
        case failed(reason: String)
    }

    public var activities: [Activity]
    /// The new integration state; the SDK's one `state` message.
    public var state: JSONValue
    /// A refreshed config (new token pair). Refreshing invalidates the old pair, so this is saved with the sync's
    /// other output (and, when the request has ``SyncRequest/saveRefreshedConfig``, already before it was used).
    public var updatedConfig: JSONValue?
    public var status: Status

    public init(activities: [Activity], state: JSONValue, updatedConfig: JSONValue? = nil, status: Status = .complete) {
        self.activities = activities
        self.state = state
        self.updatedConfig = updatedConfig
        self.status = status
    }
}

/// Why a job could not be processed at all. Retrying the same job will not help when `isPermanent`.
public struct IntegrationError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The config is missing a field or has the wrong type: fix the account record.
        case invalidConfig = "invalid_config"
        /// GitHub (or the network) failed in a way a later attempt may not see.
        case transient
        /// The input can never be processed.
        case permanent
    }

    public let kind: Kind
    public let message: String

    public var isPermanent: Bool { kind != .transient }
    public var description: String { "\(kind.rawValue): \(message)" }

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// The integrations a process knows, by key.
public struct IntegrationRegistry: Sendable {
    private var byKey: [String: any Integration]

    public init(_ integrations: [any Integration]) {
        byKey = Dictionary(integrations.map { ($0.key, $0) }, uniquingKeysWith: { _, last in last })
    }

    public subscript(key: String) -> (any Integration)? { byKey[key] }
    public var keys: [String] { byKey.keys.sorted() }
}
