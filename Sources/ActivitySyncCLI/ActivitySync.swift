import ArgumentParser
import Benchmarks

/// The one executable: every role of the system is a subcommand, so an image or a script needs one binary.
@main
struct ActivitySync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activity-sync",
        abstract: "Keeps a knowledge graph fed with what happens in people's GitHub accounts.",
        subcommands: [
            DevCommand.self, SchedulerCommand.self, WorkerCommand.self, AccountsCommand.self, EnqueueCommand.self,
            TailCommand.self, TopicsCommand.self, KafkaCommand.self, IntegrationCommand.self,
            GitHubSimulatorCommand.self, BenchCommand.self, IntegrationsCommand.self,
        ]
    )
}
