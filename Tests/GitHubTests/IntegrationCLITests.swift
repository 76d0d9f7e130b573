import ActivitySyncTesting
import Foundation
import GitHubSimulator
import SyncModel
import Testing

/// `activity-sync integration github …` as a person runs it by hand: one JSON message per line on stdout,
/// nothing secret on stderr.
@Suite("integration github CLI", .timeLimit(.minutes(2)))
struct IntegrationCLITests {
    /// Runs the command until it printed its last message (of type `last`) and exited.
    private func run(
        _ arguments: [String], last: String
    ) async throws -> (status: Int32, stdout: [String], stderr: [String]) {
        let process = try ActivitySyncProcess("integration github", arguments: arguments)
        _ = try await process.waitForLine(timeout: .seconds(60)) { $0.contains(#""type":"\#(last)""#) }
        let status = try await process.waitForExit(timeout: .seconds(30))
        return (status, process.stdoutLines, process.stderrLines)
    }

    private func message(_ line: String) throws -> JSONValue {
        try WireFormat.decoder().decode(JSONValue.self, from: Data(line.utf8))
    }

    @Test func specSetupAndTwoSyncs() async throws {
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        try await SimulatedGitHub.with({ $0.threadBumps = false }) { github in
            let user = github.user
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gh-cli-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }

            let spec = try await run(["integration", "github", "spec"], last: "spec")
            #expect(spec.status == 0)
            #expect(try message(try #require(spec.stdout.first))["data"]?["key"] == "github")

            let payload = directory.appendingPathComponent("oauth.json")
            try Data(#"{"access_token":"\#(user.token)","refresh_token":"\#(user.refreshToken)"}"#.utf8)
                .write(to: payload)
            let setup = try await run(
                [
                    "integration", "github", "setup", "--payload", payload.path, "--github-url",
                    github.simulator.baseURL,
                ], last: "account")
            #expect(setup.status == 0)
            let account = try message(try #require(setup.stdout.first))
            #expect(account["type"] == "account")
            #expect(account["data"]?["accountId"]?.stringValue == String(user.id))
            let accountFile = directory.appendingPathComponent("account.json")
            try Data(try #require(setup.stdout.first).utf8).write(to: accountFile)

            let before = Date()
            let first = try await run(
                [
                    "integration", "github", "sync", "--config", accountFile.path, "--github-url",
                    github.simulator.baseURL,
                ], last: "state")
            #expect(first.status == 0)
            let messages = try first.stdout.map(message)
            #expect(messages.last?["type"] == "state")
            #expect(messages.filter { $0["type"] == "state" }.count == 1)
            let activities = messages.filter { $0["type"] == "activity" }
            let truth = try github.simulator.truth(
                login: user.login, from: before.addingTimeInterval(-86_400), to: before)
            #expect(Set(activities.compactMap { $0["data"]?["id"]?.stringValue }) == Set(truth.map(\.id)))

            let stateFile = directory.appendingPathComponent("state.json")
            try Data(try #require(first.stdout.last).utf8).write(to: stateFile)
            let second = try await run(
                [
                    "integration", "github", "sync", "--config", accountFile.path, "--state", stateFile.path,
                    "--github-url", github.simulator.baseURL,
                ], last: "state")
            #expect(second.status == 0)
            #expect(second.stdout.count == 1, "nothing new: only the state message")

            for output in [setup, first, second] {
                #expect(!output.stderr.joined().contains(user.token))
                #expect(!output.stderr.joined().contains(user.refreshToken))
            }
        }
    }

    @Test func refreshedTokensArePrintedAsAnAccountMessage() async throws {
        try await SimulatedGitHub.with { github in
            let user = github.user
            try github.simulator.expireToken(login: user.login)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gh-cli-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let config = directory.appendingPathComponent("config.json")
            try Data(#"{"access_token":"\#(user.token)","refresh_token":"\#(user.refreshToken)"}"#.utf8)
                .write(to: config)
            let sync = try await run(
                [
                    "integration", "github", "sync", "--config", config.path, "--github-url", github.simulator.baseURL,
                ], last: "state")
            #expect(sync.status == 0)
            let messages = try sync.stdout.map(message)
            let account = try #require(messages.first { $0["type"] == "account" })
            let fresh = try #require(github.simulator.user(login: user.login))
            #expect(account["data"]?["config"]?["access_token"]?.stringValue == fresh.token)
            #expect(account["data"]?["config"]?["refresh_token"]?.stringValue == fresh.refreshToken)
            #expect(messages.last?["type"] == "state")
            #expect(!sync.stderr.joined().contains(fresh.token))
        }
    }

    /// The sync-integration SDK runs every integration as `CMD setup --event-body JSON --integration-definition JSON`
    /// and `CMD sync --config JSON --integration-definition JSON --state JSON`, with the JSON in the arguments.
    @Test func theSDKContractPassesJSONStrings() async throws {
        // Compared with the whole truth, which holds versions re-bumped before any poll: one thread per notification.
        try await SimulatedGitHub.with({ $0.threadBumps = false }) { github in
            let user = github.user
            let definition = #"{"key":"github","slug":"github","name":"GitHub","spec":{},"config":{}}"#
            let setup = try await run(
                [
                    "integration", "github", "setup", "--event-body",
                    #"{"access_token":"\#(user.token)","refresh_token":"\#(user.refreshToken)"}"#,
                    "--integration-definition", definition, "--github-url", github.simulator.baseURL,
                ], last: "account")
            #expect(setup.status == 0, "\(setup.stderr)")
            let account = try message(try #require(setup.stdout.first))
            #expect(account["data"]?["accountId"]?.stringValue == String(user.id))

            let before = Date()
            let first = try await run(
                [
                    "integration", "github", "sync", "--config", #"{"access_token":"\#(user.token)"}"#,
                    "--integration-definition", definition, "--state", "{}", "--github-url", github.simulator.baseURL,
                ], last: "state")
            #expect(first.status == 0, "\(first.stderr)")
            let messages = try first.stdout.map(message)
            let truth = try github.simulator.truth(
                login: user.login, from: before.addingTimeInterval(-86_400), to: before)
            #expect(!truth.isEmpty)
            #expect(
                Set(messages.filter { $0["type"] == "activity" }.compactMap { $0["data"]?["id"]?.stringValue })
                    == Set(truth.map(\.id)))
            let state = try #require(messages.last { $0["type"] == "state" }?["data"])
            let stateJSON = try #require(String(data: Data(try WireFormat.encode(state)), encoding: .utf8))

            let second = try await run(
                [
                    "integration", "github", "sync", "--config", #"{"access_token":"\#(user.token)"}"#,
                    "--integration-definition", definition, "--state", stateJSON, "--github-url",
                    github.simulator.baseURL,
                ], last: "state")
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stdout.count == 1, "nothing new: only the state message")
            for output in [setup, first, second] {
                #expect(!output.stderr.joined().contains(user.token))
            }
        }
    }
}
