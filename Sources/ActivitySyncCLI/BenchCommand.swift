import ArgumentParser

/// `activity-sync bench …`: benchmarks apart from the tests, each printing its command and numbers.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run a benchmark and print its numbers.",
        subcommands: [GitHubBench.self, SchedulerBench.self, WorkerBench.self]
    )
}
