import ArgumentParser

/// `activity-sync enqueue`: publish an account's sync job now, for deployments driven by an external cron.
struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract:
            "Publish a sync job for one account now: the job of its latest tick, as the scheduler would publish it.")

    @OptionGroup var kafka: SchedulerKafkaOptions
    @Option(help: "Account id.") var account: String

    func run() async throws {
        let job = try await enqueueJob(kafka: kafka, accountId: account, since: nil)
        print("published job \(job.jobId)")
    }
}
