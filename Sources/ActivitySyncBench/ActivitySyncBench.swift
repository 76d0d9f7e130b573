import ArgumentParser
import Benchmarks

/// `activity-sync-bench`: the benchmarks as their own executable (`swift run -c release activity-sync-bench …`);
/// `activity-sync bench …` runs the same commands.
@main
struct ActivitySyncBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activity-sync-bench", abstract: BenchCommand.abstract, subcommands: BenchCommand.benchmarks)
}
