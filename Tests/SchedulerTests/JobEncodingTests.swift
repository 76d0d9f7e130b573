import Foundation
import Scheduler
import SyncModel
import Testing

@Suite("Job encoding")
struct JobEncodingTests {
    @Test(arguments: ["acct-1", "user/with/slashes", "quote\"d", "tab\there", "ünïcødé-ÄÖ", "back\\slash"])
    func handWrittenJobsMatchTheWireFormat(accountId: String) throws {
        let sealed = SealedConfig(keyId: "k1", ciphertext: "AAECAwQ=/+x")
        for scheduledAt in [Date(timeIntervalSince1970: 1_796_000_400), Date(timeIntervalSince1970: 1_796_000_400.25)] {
            let job = SyncJob(accountId: accountId, integration: "github", scheduledAt: scheduledAt, sealedConfig: sealed)
            var encoder = JobEncoder()
            #expect(try encoder.encode(job) == WireFormat.encode(job))
            let due = DueJob(
                accountId: accountId, partition: 0, integration: "github", scheduledAt: scheduledAt,
                dueAt: scheduledAt, isCatchUp: false, sealedConfig: sealed)
            #expect(try encoder.encode(due) == WireFormat.encode(job))
            #expect(try WireFormat.decode(SyncJob.self, from: encoder.encode(due)) == job)
        }
        let resync = SyncJob(
            accountId: accountId, integration: "github", scheduledAt: Date(timeIntervalSince1970: 1_796_000_000),
            since: Date(timeIntervalSince1970: 1_795_000_000), sealedConfig: sealed)
        var encoder = JobEncoder()
        #expect(try encoder.encode(resync) == WireFormat.encode(resync))
    }
}
