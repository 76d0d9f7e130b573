import Testing
@testable import Worker

@Suite struct OffsetTrackerTests {
    @Test func commitsOnlyTheContiguousPrefixOfFinishedJobs() {
        var tracker = OffsetTracker()
        tracker.assign(0)
        for offset in Int64(10)...14 { let v1 = tracker.consumed(partition: 0, offset: offset); #expect(v1) }
        tracker.finished(partition: 0, offset: 12)
        tracker.finished(partition: 0, offset: 13)
        #expect(tracker.committable().isEmpty, "10 still runs: nothing after it may be committed")
        tracker.finished(partition: 0, offset: 10)
        #expect(tracker.committable() == [0: 11])
        tracker.finished(partition: 0, offset: 11)
        #expect(tracker.committable() == [0: 14], "10…13 finished; 14 runs")
        tracker.committed([0: 14])
        #expect(tracker.committable().isEmpty)
        tracker.finished(partition: 0, offset: 14)
        #expect(tracker.committable() == [0: 15])
    }

    @Test func gapsInOffsetsFromTransactionMarkersDoNotBlock() {
        var tracker = OffsetTracker()
        tracker.assign(3)
        tracker.consumed(partition: 3, offset: 5)
        tracker.consumed(partition: 3, offset: 7)  // 6 was a commit marker
        tracker.finished(partition: 3, offset: 7)
        tracker.finished(partition: 3, offset: 5)
        #expect(tracker.committable() == [3: 8])
    }

    @Test func partitionsAreIndependentAndRevocationDropsThem() {
        var tracker = OffsetTracker()
        tracker.assign(0)
        tracker.assign(1)
        tracker.consumed(partition: 0, offset: 0)
        tracker.consumed(partition: 1, offset: 0)
        tracker.finished(partition: 1, offset: 0)
        #expect(tracker.committable() == [1: 1])
        tracker.revoke([1])
        #expect(tracker.committable().isEmpty)
        let v2 = tracker.consumed(partition: 1, offset: 1)
        #expect(!v2, "a revoked partition's messages are dropped")
    }

    @Test func redeliveredOffsetsAreIgnored() {
        var tracker = OffsetTracker()
        tracker.assign(0)
        let v3 = tracker.consumed(partition: 0, offset: 4)
        #expect(v3)
        let v4 = tracker.consumed(partition: 0, offset: 4)
        #expect(!v4)
        let v5 = tracker.consumed(partition: 0, offset: 2)
        #expect(!v5)
    }

    @Test func rewindGoesBackToTheCommittedPosition() {
        var tracker = OffsetTracker()
        tracker.assign(0)
        for offset in Int64(0)...5 { tracker.consumed(partition: 0, offset: offset) }
        for offset in Int64(0)...2 { tracker.finished(partition: 0, offset: offset) }
        tracker.committed([0: 3])
        tracker.finished(partition: 0, offset: 3)
        let v6 = tracker.rewind(partition: 0)
        #expect(v6 == 3)
        #expect(tracker.committable().isEmpty, "work after the committed position is forgotten")
        let v7 = tracker.consumed(partition: 0, offset: 3)
        #expect(v7, "and is consumed again")
        tracker.finished(partition: 0, offset: 3)
        #expect(tracker.committable() == [0: 4])
    }

    @Test func rewindBeforeAnyCommitGoesToTheFirstConsumedOffset() {
        var tracker = OffsetTracker()
        tracker.assign(0)
        let v8 = tracker.rewind(partition: 0)
        #expect(v8 == nil)
        tracker.consumed(partition: 0, offset: 40)
        tracker.consumed(partition: 0, offset: 41)
        let v9 = tracker.rewind(partition: 0)
        #expect(v9 == 40)
    }

    @Test func manyJobsKeepMemoryBounded() {
        var tracker = OffsetTracker()
        tracker.assign(0)
        for offset in Int64(0)..<10_000 {
            tracker.consumed(partition: 0, offset: offset)
            tracker.finished(partition: 0, offset: offset)
            if offset % 100 == 99 { tracker.committed(tracker.committable()) }
        }
        #expect(tracker.uncommittedCount(partition: 0) == 0)
        #expect(tracker.committedPosition(partition: 0) == 10_000)
    }

    @Test("the committable prefix is kept as jobs finish, across commits, compaction and a rewind")
    func committablePrefixAcrossCompaction() {
        var tracker = OffsetTracker()
        tracker.assign(0)
        var finished = Set<Int64>()
        var committed: Int64 = 0
        var rng = SplitMix(seed: 42)
        func expected() -> Int64? {
            var next = committed
            while finished.contains(next) { next += 1 }
            return next == committed ? nil : next
        }
        for offset in Int64(0)..<5000 { tracker.consumed(partition: 0, offset: offset) }
        for step in 0..<6000 {
            // Mostly in order, sometimes far ahead (a slow job holds the head meanwhile).
            let ahead = rng.next() % 4 == 0 ? Int64(rng.next() % 400) : 0
            var offset = min(4999, committed + ahead)
            while finished.contains(offset), offset < 4999 { offset += 1 }
            finished.insert(offset)
            tracker.finished(partition: 0, offset: offset)
            #expect(tracker.committable(partition: 0) == expected(), "step \(step)")
            if step % 7 == 0, let position = expected() {
                tracker.committed([0: position])
                committed = position
                #expect(tracker.committable(partition: 0) == nil)
                #expect(tracker.uncommittedCount(partition: 0) == Int(5000 - committed))
            }
        }
        #expect(committed > 2048, "compaction happened (it starts past 1,024 committed entries)")
        #expect(tracker.rewind(partition: 0) == committed)
        #expect(tracker.committable(partition: 0) == nil)
        tracker.consumed(partition: 0, offset: committed)
        tracker.finished(partition: 0, offset: committed)
        #expect(tracker.committable(partition: 0) == committed + 1)
    }
}
