import ActivitySyncTesting
import Foundation
import GitHubSimulator
import IntegrationCatalog
import Logging
import SyncModel
import Testing

@testable import GitHub

/// A running simulator on port 0 with an integration pointed at it; each test makes its own.
struct SimulatedGitHub {
    let simulator: GitHubSimulator
    let integration: GitHubIntegration

    static let quiet = Logger(label: "github-tests", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Starts a simulator, runs `body`, stops it (also when `body` throws).
    static func with<T>(
        _ configure: (inout SimulatorConfiguration) -> Void = { _ in },
        integration tweak: (inout GitHubConfiguration) -> Void = { _ in },
        _ body: (SimulatedGitHub) async throws -> T
    ) async throws -> T {
        try await withSimulator(
            { configuration in
                configuration.pollInterval = 0
                configuration.activityInterval = .seconds(3600)
                configure(&configuration)
            }, logger: quiet
        ) { simulator in
            var github = GitHubConfiguration(baseURL: simulator.baseURL)
            github.initialBackoff = .milliseconds(20)
            github.maxBackoff = .milliseconds(200)
            tweak(&github)
            return try await body(
                SimulatedGitHub(
                    simulator: simulator, integration: GitHubIntegration(configuration: github, logger: quiet)))
        }
    }

    var user: SimulatedUser { simulator.users[0] }

    func config(_ user: SimulatedUser, refresh: Bool = false) -> JSONValue {
        var object: [String: JSONValue] = [
            "access_token": .string(user.token), "mcp": ["tokens": ["access_token": .string(user.token)]],
        ]
        if refresh { object["refresh_token"] = .string(user.refreshToken) }
        return .object(object)
    }

    /// One sync of `user` with `state`; `timeout` bounds it.
    func sync(
        _ user: SimulatedUser, state: JSONValue?, refresh: Bool = false, timeout: TimeInterval = 30,
        since: Date? = nil
    ) async throws -> SyncOutcome {
        try await integration.sync(
            SyncRequest(
                accountId: String(user.id), config: config(user, refresh: refresh), state: state, since: since,
                deadline: Date().addingTimeInterval(timeout)))
    }

    /// Requests the simulator recorded for `login` after `index` (an earlier `requests().count`).
    func requests(of login: String, since index: Int = 0) -> [RecordedRequest] {
        simulator.requests().dropFirst(index).filter { $0.login == login }
    }
}

/// Checks every field the simulator's truth states for an activity, where a user of the stream would see it.
func expectActivity(
    _ activity: Activity, matches expected: ExpectedActivity, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(activity.text == expected.text, sourceLocation: sourceLocation)
    #expect(activity.kind == expected.kind, sourceLocation: sourceLocation)
    #expect(activity.sourceURL == expected.sourceURL, sourceLocation: sourceLocation)
    #expect(activity.commentURL == expected.commentURL, sourceLocation: sourceLocation)
    #expect(activity.repo == expected.repo, sourceLocation: sourceLocation)
    #expect((activity.number ?? 0) == expected.number, sourceLocation: sourceLocation)
    #expect(activity.occurredAt == expected.occurredAt, sourceLocation: sourceLocation)
}

extension SyncOutcome {
    var githubState: GitHubState { (try? GitHubState(json: state)) ?? GitHubState() }

    var isComplete: Bool { status == .complete }
}
