import Foundation
import SyncModel
import Testing
@testable import Worker

@Suite struct StateStoreTests {
    func state(_ account: String, _ marker: String) throws -> [UInt8] {
        try WireFormat.encode(
            StateRecord(
                accountId: account, integration: "github", lastJob: JobMarker(jobId: marker, scheduledAt: Date()),
                updatedAt: Date(), data: ["m": .string(marker)]))
    }

    @Test func restoreKeepsTheLastRecordPerKeyAndHonoursTombstones() throws {
        var store = StateStore()
        #expect(!store.isRestored(2))
        let (states, undecodable) = StateStore.decode([
            (Array("a".utf8), try state("a", "1")), (Array("b".utf8), try state("b", "1")),
            (Array("a".utf8), try state("a", "2")), (Array("b".utf8), nil), (Array("c".utf8), Array("{x".utf8)),
        ])
        #expect(undecodable == 1)
        store.restore(partition: 2, states: states)
        #expect(store.isRestored(2))
        #expect(store.state(partition: 2, accountId: "a")?.lastJob?.jobId == "2")
        #expect(store.state(partition: 2, accountId: "b") == nil)
        store.drop([2])
        #expect(!store.isRestored(2))
        #expect(store.state(partition: 2, accountId: "a") == nil)
    }

    @Test func statusIsReportedOnlyWhenItChanges() {
        var store = StateStore()
        let v1 = store.statusChanged(accountId: "a", to: .ok)
        #expect(v1)
        let v2 = store.statusChanged(accountId: "a", to: .ok)
        #expect(!v2)
        let v3 = store.statusChanged(accountId: "a", to: .needsReauth)
        #expect(v3)
    }
}

@Suite struct DuplicateFireTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    func job(_ at: Date, since: Date? = nil) -> SyncJob {
        SyncJob(
            accountId: "a", integration: "github", scheduledAt: at, since: since)
    }

    @Test func aTickNotNewerThanTheLastOneIsADuplicate() {
        let last = JobMarker(jobId: job(t0).jobId, scheduledAt: t0)
        #expect(DuplicateFire.isDuplicate(job(t0), lastJob: last))
        #expect(DuplicateFire.isDuplicate(job(t0 - 300), lastJob: last))
        #expect(!DuplicateFire.isDuplicate(job(t0 + 300), lastJob: last))
        #expect(!DuplicateFire.isDuplicate(job(t0), lastJob: nil), "the first job of an account always runs")
    }

    @Test func resyncJobsAlwaysRunAndDoNotMoveTheMarker() {
        let last = JobMarker(jobId: job(t0).jobId, scheduledAt: t0)
        let resync = job(t0 - 60, since: t0 - 86400)
        #expect(!DuplicateFire.isDuplicate(resync, lastJob: last))
        #expect(DuplicateFire.marker(after: resync, previous: last) == last)
        #expect(DuplicateFire.marker(after: job(t0 + 300), previous: last)?.scheduledAt == t0 + 300)
    }
}
