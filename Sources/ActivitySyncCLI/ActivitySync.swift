import ArgumentParser

/// The one executable: every role of the system is a subcommand, so an image or a script needs one binary.
@main
struct ActivitySync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activity-sync",
        abstract: "Keeps a knowledge graph fed with what happens in people's GitHub accounts.",
        subcommands: [
            IntegrationCommand.self, GitHubSimulatorCommand.self, SchedulerCommand.self, AccountsCommand.self,
            EnqueueCommand.self, WorkerCommand.self, TailCommand.self, BenchCommand.self,
        ]
    )
}
