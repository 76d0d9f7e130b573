import Accounts
import ArgumentParser
import Foundation
import SyncModel

/// `activity-sync enqueue`: publish accounts' sync jobs now, for deployments driven by an external cron.
struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Publish sync jobs now: for each account the job of its latest tick, as the scheduler would.",
        discussion: """
            All jobs go out through one producer in one pass. With --account or --accounts-file only the \
            partitions of the accounts topic holding those ids are read; --all reads the topic once and skips \
            disabled and paused accounts, and those whose status is needs_reauth for their current record (as the \
            scheduler does; named on stderr). An account named with --account is published whatever its state. \
            Prints `published job ID` per job; exits 1 if an id is not on the accounts topic (the others are still \
            published).

            With --wait, waits for each job's run record (on the runs topic, written in the job's transaction) and \
            prints `job ID: OUTCOME …` per job. Exit status: 0 when every job succeeded or was skipped as a tick \
            that had already run; 3 when a job ended otherwise (partial, failed, needs_reauth, coalesced, \
            dead_lettered, skipped because the account is paused); 4 when a job had no run record within \
            --timeout-s; 1 when an id is not on the accounts topic. The highest applies.
            """)

    @OptionGroup var options: CommonOptions

    @Option(help: "Account id; repeat for several.")
    var account: [String] = []

    @Flag(help: "Every enabled account on the accounts topic.")
    var all = false

    @Option(help: "File of account ids, one per line (blank lines and # comments ignored), or - for stdin.")
    var accountsFile: String?

    @Flag(help: "Wait for each job's run record and print its outcome (exit status: see above).")
    var wait = false

    @Option(name: .customLong("timeout-s"), help: "With --wait: how long to wait for the run records, in seconds.")
    var timeoutSeconds = 120

    func validate() throws {
        let modes = [!account.isEmpty, all, accountsFile != nil].filter { $0 }.count
        guard modes == 1 else {
            throw ValidationError("give exactly one of --account ID (repeatable), --all or --accounts-file F|-")
        }
    }

    func run() async throws {
        let selection: AccountsTopicClient.Selection
        if all {
            selection = .all
        } else if let accountsFile {
            selection = .accounts(try Self.readIds(accountsFile))
        } else {
            selection = .accounts(account)
        }
        let client = try options.accountsClient()
        var status: Int32 = 0
        let result: AccountsTopicClient.EnqueueResult
        if wait {
            let (published, runs) = try await client.enqueue(selection, waitingUpTo: .seconds(max(1, timeoutSeconds)))
            result = published
            FileHandle.standardOutput.write(Data(published.jobs.map { "published job \($0.jobId)\n" }.joined().utf8))
            for job in published.jobs {
                let (line, code) = Self.describe(job, run: runs[job.jobId], timeoutSeconds: timeoutSeconds)
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
                status = max(status, code)
            }
        } else {
            result = try await client.enqueue(selection)
            FileHandle.standardOutput.write(Data(result.jobs.map { "published job \($0.jobId)\n" }.joined().utf8))
        }
        if !result.heldForReauth.isEmpty {
            let shown = result.heldForReauth.prefix(10).joined(separator: ", ")
            let more = result.heldForReauth.count > 10 ? ", …" : ""
            FileHandle.standardError.write(
                Data(
                    ("skipped \(result.heldForReauth.count) account(s) waiting for re-authentication (needs_reauth "
                        + "for their current record; reconnect them with new tokens): \(shown)\(more)\n").utf8))
        }
        if !result.unknownAccountIds.isEmpty {
            let error = AccountsError.unknownAccounts(result.unknownAccountIds, topic: client.topics.accounts)
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            status = max(status, 1)
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// The line `--wait` prints for a job, and the exit status it calls for.
    static func describe(_ job: SyncJob, run: RunRecord?, timeoutSeconds: Int) -> (String, Int32) {
        guard let run else { return ("job \(job.jobId): no run record within \(timeoutSeconds) s", 4) }
        let seconds = String(format: "%.1f", run.finishedAt.timeIntervalSince(run.startedAt))
        let reason = run.reason.map { ": \($0)" } ?? ""
        switch run.outcome {
        case .succeeded:
            return ("job \(job.jobId): succeeded (\(run.activities) activities, \(seconds) s)", 0)
        case .skipped where run.reason?.hasPrefix("duplicate") ?? false:
            return ("job \(job.jobId): skipped, this tick had already run", 0)
        default:
            return (
                "job \(job.jobId): \(run.outcome.rawValue) (\(run.activities) activities, \(seconds) s)\(reason)", 3
            )
        }
    }

    static func readIds(_ path: String) throws -> [String] {
        let ids = try readInput(path, named: "--accounts-file \(path)").split(whereSeparator: \.isNewline).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !ids.isEmpty else { throw ValidationError("--accounts-file \(path) holds no account id") }
        return ids
    }
}
