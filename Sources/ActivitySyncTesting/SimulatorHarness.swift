public import GitHubSimulator
public import Logging

/// Runs `body` against a GitHub simulator listening on a free loopback port, and stops it afterwards (also when
/// `body` throws): every test that talks HTTP to GitHub starts its world this way.
/// - Parameters:
///   - configure: adjusts the simulated world (seed, users, faults, thread bumps, event lag, …).
///   - logger: the simulator's logger (quiet unless a test wants its lines).
public func withSimulator<T>(
    _ configure: (inout SimulatorConfiguration) -> Void = { _ in },
    logger: Logger = Logger(label: "activity-sync.test.simulator") { _ in SwiftLogNoOpLogHandler() },
    _ body: (GitHubSimulator) async throws -> T
) async throws -> T {
    var configuration = SimulatorConfiguration()
    configuration.port = 0
    configure(&configuration)
    let simulator = GitHubSimulator(configuration: configuration, logger: logger)
    try await simulator.start()
    do {
        let result = try await body(simulator)
        await simulator.stop()
        return result
    } catch {
        await simulator.stop()
        throw error
    }
}
