import Foundation
import IntegrationCatalog
import SyncModel
import Testing

@testable import GitHub
import GitHubSimulator

/// The state caches the login for the events feed; a renamed account must not lose its events forever.
@Suite("Renamed user", .timeLimit(.minutes(1)))
struct RenamedUserTests {
    @Test("events of a stale login 404: the next sync learns the login again and reads the events")
    func staleLoginIsRelearned() async throws {
        try await SimulatedGitHub.with({
            $0.users = 1; $0.historyItems = 20
        }) { github in
            let user = github.user
            var stale = GitHubState()
            stale.username = "\(user.login)-before-rename"
            let first = try await github.sync(user, state: stale.json)
            let afterFirst = try GitHubState(json: first.state)
            #expect(afterFirst.username == nil, "a 404 on the events feed forgets the cached login")
            #expect(
                github.simulator.requests().contains { $0.path.hasSuffix("-before-rename/events") && $0.status == 404 })

            let second = try await github.sync(user, state: first.state)
            let afterSecond = try GitHubState(json: second.state)
            #expect(afterSecond.username == user.login)
            #expect(second.activities.contains { $0.id.hasPrefix("github:event:") }, "events are read again")
        }
    }
}
