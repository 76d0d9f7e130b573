import Foundation
public import IntegrationCatalog
public import Logging
public import SyncModel

/// The GitHub integration: spec, setup and sync with the reference SDK's semantics, minus its losses.
///
/// A sync reads the account's notifications (kept reasons only; Issue, PullRequest and Discussion subjects) and
/// the user's own events, and emits one ``SyncModel/Activity`` per item with the reference texts. It spends as
/// little quota as GitHub allows: conditional requests (304s are free), X-Poll-Interval, one fetch per
/// distinct subject, and a shared subject cache. It never throws for conditions the outcome can express: a
/// rejected token, a rate limit or the deadline come back as ``SyncModel/SyncOutcome/Status`` with the progress
/// so far in the state, so nothing is lost.
public struct GitHubIntegration: Integration {
    public let key = "github"
    /// The process-wide client; share one integration (or client) across accounts so limits and caches are
    /// shared too.
    public let client: GitHubClient
    let logger: Logger

    public init(configuration: GitHubConfiguration = GitHubConfiguration(), logger: Logger) {
        self.init(client: GitHubClient(configuration: configuration, logger: logger), logger: logger)
    }

    public init(client: GitHubClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// The spec document, as the SDK's `spec` event returns it.
    public func spec() -> JSONValue {
        [
            "name": "GitHub extension",
            "key": "github",
            "description": .string(
                "Turns GitHub notifications (assignments, review requests, mentions, comments, state changes) and "
                    + "your own pull requests, issues and comments into activities."),
            "icon": "github",
            "schedule": ["frequency": "*/5 * * * *"],
            "auth": [
                "OAuth2": [
                    "token_url": "https://github.com/login/oauth/access_token",
                    "authorization_url": "https://github.com/login/oauth/authorize",
                    "scopes": ["user", "public_repo", "repo", "notifications", "read:org"],
                    "scope_separator": ",",
                ]
            ],
            "mcp": [
                "type": "http",
                "url": "https://api.githubcopilot.com/mcp/",
                "headers": ["Authorization": "Bearer ${config:access_token}"],
            ],
        ]
    }

    /// Reads the authenticated user (`GET /user`) and returns the account message.
    ///
    /// - Parameter oauthResponse: GitHub's token response, `{access_token, refresh_token?, …}`.
    /// - Throws: ``IntegrationError`` `.invalidConfig` without an access token or when GitHub
    ///   rejects it; `.transient` when GitHub cannot be reached.
    public func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        guard let accessToken = oauthResponse["access_token"]?.stringValue, !accessToken.isEmpty else {
            throw IntegrationError(.invalidConfig, "the OAuth response has no access_token")
        }
        let refreshToken = oauthResponse["refresh_token"]?.stringValue
        let credentials = AccountCredentials(accessToken: accessToken, refreshToken: nil)
        let user: GitHubAccount
        do {
            let (value, _) = try await client.getJSON(
                GitHubAccount.self, client.apiURL("/user"), credentials: credentials,
                deadline: Date().addingTimeInterval(60))
            guard let value else { throw GitHubError(.malformed("304 without a cached user")) }
            user = value
        } catch let error as GitHubError {
            throw IntegrationError(error.isUnauthorized ? .invalidConfig : .transient, error.description)
        }
        var config: [String: JSONValue] = [
            "access_token": .string(accessToken),
            "mcp": ["tokens": ["access_token": .string(accessToken)]],
        ]
        if let refreshToken { config["refresh_token"] = .string(refreshToken) }
        return AccountSetup(
            accountId: String(user.id),
            config: .object(config),
            settings: ["username": .string(user.login), "schedule": ["frequency": "*/5 * * * *"]])
    }

    /// Runs one sync of one account; see ``GitHubIntegration`` for what it reads.
    ///
    /// The first sync reads the last 24 h. Later syncs read notifications from their watermark minus a 2-minute
    /// overlap, paged by time, and drop ids they already emitted; events down to a 6-hour lag horizon, new by id,
    /// so an event GitHub shows late is still emitted. With ``SyncModel/SyncRequest/since`` (a resync) the window starts there,
    /// validators and poll intervals are ignored, and activities are emitted again with the same ids, so
    /// consumers that dedupe by id see no change.
    ///
    /// - Throws: ``IntegrationError`` `.invalidConfig` when the config has no `access_token`.
    public func sync(_ request: SyncRequest) async throws -> SyncOutcome {
        guard let accessToken = request.config["access_token"]?.stringValue, !accessToken.isEmpty else {
            throw IntegrationError(.invalidConfig, "the GitHub account config has no access_token")
        }
        var state: GitHubState
        do {
            state = try GitHubState(json: request.state)
        } catch {
            logger.warning(
                "unreadable GitHub state; starting over from the first-sync window",
                metadata: ["accountId": "\(request.accountId)"])
            state = GitHubState()
        }
        var savePair: (@Sendable (String, String?) async throws -> Void)?
        if let save = request.saveRefreshedConfig {
            let config = request.config
            savePair = { access, refresh in
                try await save(Self.config(config, accessToken: access, refreshToken: refresh))
            }
        }
        let credentials = AccountCredentials(
            accessToken: accessToken, refreshToken: request.config["refresh_token"]?.stringValue, save: savePair)
        var run = SyncRun(
            client: client, logger: logger, request: request, state: state, credentials: credentials,
            started: Date())
        let status = await run.run()
        var outcome = SyncOutcome(activities: run.activities, state: run.state.json, status: status)
        if await credentials.refreshed {
            outcome.updatedConfig = Self.config(
                request.config, accessToken: await credentials.accessToken,
                refreshToken: await credentials.refreshToken)
        }
        return outcome
    }

    /// The account config with a new token pair (also in `mcp.tokens`), other fields kept.
    static func config(_ config: JSONValue, accessToken: String, refreshToken: String?) -> JSONValue {
        var object = config.objectValue ?? [:]
        object["access_token"] = .string(accessToken)
        if let refreshToken { object["refresh_token"] = .string(refreshToken) }
        var mcp = object["mcp"]?.objectValue ?? [:]
        var tokens = mcp["tokens"]?.objectValue ?? [:]
        tokens["access_token"] = .string(accessToken)
        mcp["tokens"] = .object(tokens)
        object["mcp"] = .object(mcp)
        return .object(object)
    }
}
