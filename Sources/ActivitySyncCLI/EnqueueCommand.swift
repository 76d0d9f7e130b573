import Accounts
import ArgumentParser
import Foundation

/// `activity-sync enqueue`: publish accounts' sync jobs now, for deployments driven by an external cron.
struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Publish sync jobs now: for each account the job of its latest tick, as the scheduler would.",
        discussion: """
            All jobs go out through one producer in one pass. With --account or --accounts-file only the \
            partitions of the accounts topic holding those ids are read; --all reads the topic once and skips \
            disabled accounts. Prints `published job ID` per job; exits 1 if an id is not on the accounts topic \
            (the others are still published).
            """)

    @OptionGroup var options: CommonOptions

    @Option(help: "Account id; repeat for several.")
    var account: [String] = []

    @Flag(help: "Every enabled account on the accounts topic.")
    var all = false

    @Option(help: "File of account ids, one per line (blank lines and # comments ignored), or - for stdin.")
    var accountsFile: String?

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
        let result = try await client.enqueue(selection)
        FileHandle.standardOutput.write(Data(result.jobs.map { "published job \($0.jobId)\n" }.joined().utf8))
        if !result.unknownAccountIds.isEmpty {
            let error = AccountsError.unknownAccounts(result.unknownAccountIds, topic: client.topics.accounts)
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode(1)
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
