public import ArgumentParser
import Logging

/// `activity-sync bench …` (or `activity-sync-bench …`): throughput measurements, kept apart from the tests and
/// from the roles' code. Each benchmark prints the command it ran and a markdown table of what it measured.
public struct BenchCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: abstract,
        subcommands: benchmarks
    )

    /// What every way of running the benchmarks says about them.
    public static let abstract = "Benchmarks; each prints the command and a markdown table of what it measured."

    /// The benchmarks, as subcommands of whichever command hosts them.
    public static let benchmarks: [any ParsableCommand.Type] = [
        KafkaBenchCommand.self, GitHubBench.self, SchedulerBench.self, WorkerBench.self, RestoreBench.self,
        StuckHeadBench.self,
    ]

    public init() {}
}

/// The benchmarks' logging: warnings and worse to stderr, so the numbers on stdout stay readable.
enum BenchLogging {
    /// Bootstraps the process's logging (once per process) and returns the bench's logger.
    static func bootstrap() -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        return Logger(label: "bench")
    }
}
