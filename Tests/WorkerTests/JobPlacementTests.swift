import Foundation
import Kafka
import SyncModel
import Testing
@testable import Worker

@Suite struct JobPlacementTests {
    let placement = JobPlacement(partitionCount: 12)

    func job(_ account: String) -> SyncJob {
        SyncJob(
            accountId: account, integration: "github", scheduledAt: Date(timeIntervalSince1970: 1_800_000_000),
            sealedConfig: SealedConfig(keyId: "k", algorithm: "AES-256-GCM", ciphertext: "AA=="))
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

    @Test("jobs and state must exist and be co-partitioned; the error names the topics and the fix")
    func topicsAreChecked() throws {
        #expect(try JobPlacement.check(topics: ["j": 12, "s": 12], jobs: "j", state: "s").partitionCount == 12)
        #expect { try JobPlacement.check(topics: ["j": 12, "s": 6], jobs: "j", state: "s") } throws: { error in
            "\(error)".contains("j has 12 partitions and s has 6")
        }
        #expect { try JobPlacement.check(topics: ["j": 12], jobs: "j", state: "s") } throws: { error in
            "\(error)".contains("topics create --partitions 12")
        }
        #expect { try JobPlacement.check(topics: [:], jobs: "j", state: "s") } throws: { error in
            "\(error)".contains("does not exist")
        }
    }
}
