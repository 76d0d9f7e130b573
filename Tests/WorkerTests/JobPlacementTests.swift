import Foundation
import Kafka
import SyncModel
import Testing
@testable import Worker

@Suite struct JobPlacementTests {
    let placement = JobPlacement(partitionCount: 12)

    func job(_ account: String) -> SyncJob {
        SyncJob(accountId: account, integration: "github", scheduledAt: Date(timeIntervalSince1970: 1_800_000_000))
    }

    @Test("a job runs only in the partition murmur2 puts its account in; elsewhere it is wrong_partition")
    func wrongPartitionIsPoison() {
        let home = KeyPartitioner.murmur2(Array("583231".utf8), partitionCount: 12)
        #expect(placement.poison(for: job("583231"), in: home) == nil)
        let elsewhere = (home + 5) % 12
        let poison = placement.poison(for: job("583231"), in: elsewhere)
        #expect(poison?.kind == .wrongPartition)
        #expect(poison?.reason.contains("partition \(home)") == true, "names the right partition")
        #expect(poison?.reason.contains("arrived in partition \(elsewhere)") == true)
    }

    @Test("jobs, state and accounts must exist and be co-partitioned; the error names the topics and the fix")
    func topicsAreChecked() throws {
        let names = TopicNames(prefix: "t")
        func counts(jobs: Int?, state: Int?, accounts: Int?) -> [String: Int] {
            var topics: [String: Int] = [names.activities: 12, names.deadLetters: 12, names.status: 12, names.runs: 12]
            topics[names.jobs] = jobs
            topics[names.state] = state
            topics[names.accounts] = accounts
            return topics
        }
        #expect(
            try JobPlacement.check(topics: counts(jobs: 12, state: 12, accounts: 12), names: names).partitionCount == 12
        )
        #expect { try JobPlacement.check(topics: counts(jobs: 12, state: 6, accounts: 12), names: names) } throws: {
            "\($0)".contains("t.jobs has 12 partitions and t.state has 6")
        }
        #expect { try JobPlacement.check(topics: counts(jobs: 12, state: 12, accounts: 4), names: names) } throws: {
            "\($0)".contains("t.jobs has 12 partitions and t.accounts has 4")
                && "\($0)".contains("accounts partition p")
        }
        #expect { try JobPlacement.check(topics: counts(jobs: 12, state: 12, accounts: nil), names: names) } throws: {
            "\($0)".contains("the accounts topic t.accounts does not exist")
                && "\($0)".contains("topics create --partitions 12")
        }
        #expect { try JobPlacement.check(topics: [:], names: names) } throws: { "\($0)".contains("does not exist") }
        // Schedulers pair status partition p with accounts partition p to hold back needs_reauth accounts.
        var fewerStatus = counts(jobs: 12, state: 12, accounts: 12)
        fewerStatus[names.status] = 3
        #expect { try JobPlacement.check(topics: fewerStatus, names: names) } throws: {
            "\($0)".contains("t.jobs has 12 partitions and t.status has 3") && "\($0)".contains("status partition p")
        }
        var withoutRuns = counts(jobs: 12, state: 12, accounts: 12)
        withoutRuns[names.runs] = nil
        #expect { try JobPlacement.check(topics: withoutRuns, names: names) } throws: {
            "\($0)".contains("the topic t.runs does not exist") && "\($0)".contains("topics create")
        }
    }
}
