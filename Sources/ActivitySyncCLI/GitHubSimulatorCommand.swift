import ArgumentParser
import Foundation
import GitHubSimulator
import Logging
import ServiceLifecycle
import UnixSignals

/// `activity-sync github-sim`: the simulated GitHub as a process, for dev mode, end-to-end tests and benchmarks.
///
/// The first stdout line is exactly `listening on http://127.0.0.1:PORT`, so a parent process can read the port
/// when it asked for port 0.
struct GitHubSimulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "github-sim",
        abstract: "Serve a simulated GitHub REST API on loopback (deterministic world, faults, ground truth)."
    )

    @Option(help: "Port to listen on; 0 picks a free one.")
    var port = 0

    @Option(help: "Address to bind (0.0.0.0 in a container).")
    var host = "127.0.0.1"

    @Option(
        help: "Origin put into the URLs the simulator returns, e.g. http://github-sim:8080 (default: the bound one).")
    var publicURL: String?

    @Option(help: "Number of simulated accounts (user1 … userN).")
    var users = 3

    @Option(help: "Seed of the generated world.")
    var seed: UInt64 = 1

    @Option(name: .customLong("latency-ms"), help: "Delay added to every API request, in milliseconds.")
    var latencyMilliseconds = 0

    @Option(help: "Share of API requests answered with 502/503 (0…1).")
    var errorRate = 0.0

    @Option(help: "Share of API requests answered 200 with truncated JSON (0…1).")
    var malformedRate = 0.0

    @Option(help: "Share of API requests whose connection is closed without an answer (0…1).")
    var dropRate = 0.0

    @Option(help: "Share of API requests answered 403 secondary rate limit with retry-after (0…1).")
    var secondaryLimitRate = 0.0

    @Option(help: "X-Poll-Interval seconds.")
    var pollInterval = 60

    @Option(name: .customLong("activity-interval-s"), help: "Mean seconds between new items per user.")
    var activityIntervalSeconds = 30.0

    @Option(help: "Hours of history before start.")
    var historyHours = 12

    @Option(help: "Mean number of history items per user.")
    var historyItems = 30

    @Option(
        help: "Start of live activity (RFC 3339); two simulators with the same seed and start serve the same world.")
    var start: String?

    @Option(help: "Requests per hour per account.")
    var quotaPerHour = 5000

    @Option(
        name: .customLong("event-lag"),
        help: "Events show up in /users/{u}/events a seeded random 0…S seconds after they happen (GitHub: 30 s to 6 h)."
    )
    var eventLagSeconds = 0.0

    @Flag(
        inversion: .prefixedNo,
        help: "One notification thread per subject and user, re-bumped by new activity, as on GitHub.")
    var threadBumps = true

    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical).")
    var logLevel = "info"

    func validate() throws {
        for (name, rate) in [
            ("error-rate", errorRate), ("malformed-rate", malformedRate), ("drop-rate", dropRate),
            ("secondary-limit-rate", secondaryLimitRate),
        ] where !(0...1).contains(rate) {
            throw ValidationError("--\(name) must be between 0 and 1, got \(rate)")
        }
        guard users >= 1 else { throw ValidationError("--users must be at least 1") }
        guard activityIntervalSeconds > 0 else { throw ValidationError("--activity-interval-s must be positive") }
        guard eventLagSeconds >= 0, eventLagSeconds.isFinite else {
            throw ValidationError("--event-lag must be a number of seconds, 0 or more")
        }
        if let start, (try? Date(start, strategy: .iso8601)) == nil {
            throw ValidationError("--start must be an RFC 3339 time such as 2026-12-01T04:00:00Z")
        }
        if let publicURL, !(publicURL.hasPrefix("http://") || publicURL.hasPrefix("https://")) {
            throw ValidationError("--public-url must be an http(s) origin such as http://github-sim:8080")
        }
    }

    func run() async throws {
        var logger = Logger(label: "github-sim")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        var configuration = SimulatorConfiguration()
        configuration.port = port
        configuration.host = host
        configuration.publicBaseURL = publicURL
        configuration.users = users
        configuration.seed = seed
        configuration.latency = .milliseconds(latencyMilliseconds)
        configuration.errorRate = errorRate
        configuration.malformedRate = malformedRate
        configuration.dropRate = dropRate
        configuration.secondaryLimitRate = secondaryLimitRate
        configuration.pollInterval = pollInterval
        configuration.activityInterval = .milliseconds(Int64(activityIntervalSeconds * 1000))
        configuration.historyHours = historyHours
        configuration.historyItems = historyItems
        if let start, let date = try? Date(start, strategy: .iso8601) { configuration.start = date }
        configuration.quotaPerHour = quotaPerHour
        configuration.eventLag = .milliseconds(Int64(eventLagSeconds * 1000))
        configuration.threadBumps = threadBumps
        let simulator = GitHubSimulator(configuration: configuration, logger: logger)
        try await simulator.start()
        // Written straight to the file descriptor (no stdio buffering), so a parent reading a pipe sees it at once.
        FileHandle.standardOutput.write(Data("listening on \(simulator.boundURL)\n".utf8))
        let group = ServiceGroup(
            configuration: .init(
                services: [SimulatorService(simulator: simulator)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

/// Keeps the simulator up until the service group is asked to shut down (SIGINT/SIGTERM).
struct SimulatorService: Service {
    let simulator: GitHubSimulator

    func run() async throws {
        try? await gracefulShutdown()
        await simulator.stop()
    }
}
