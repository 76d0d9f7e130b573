import ArgumentParser

/// `activity-sync bench …`: benchmarks that print the command and the numbers they produced.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks against in-process test doubles (GitHub simulator, embedded Kafka).",
        subcommands: [GitHubBench.self]
    )
}
