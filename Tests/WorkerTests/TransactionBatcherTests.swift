import Foundation
import Testing
import Worker

@Suite struct TransactionBatcherTests {
    func result(_ name: String) -> JobResult {
        var result = JobResult(outcome: .synced)
        result.records = [OutgoingRecord(topic: "activities", key: name, value: Array(name.utf8))]
        result.stateRecords = [OutgoingRecord(topic: "state", partition: 0, key: name, value: [])]
        return result
    }

    func batch(_ action: TransactionBatcher.Action) -> TransactionBatcher.Batch? {
        if case .commit(let batch) = action { return batch }
        return nil
    }

    @Test func commitsByTimeOnlyTheContiguousPrefix() {
        var configuration = TransactionBatcher.Configuration()
        configuration.commitInterval = .milliseconds(100)
        let batcher = TransactionBatcher(configuration: configuration)
        let t0 = Date()
        batcher.assign([0])
        for offset in Int64(0)...2 { #expect(batcher.consumed(partition: 0, offset: offset)) }
        #expect(batch(batcher.finished(partition: 0, offset: 0, result: result("a"), now: t0)) == nil)
        #expect(batch(batcher.finished(partition: 0, offset: 2, result: result("c"), now: t0)) == nil)
        #expect(batch(batcher.tick(now: t0 + 0.05)) == nil, "not before the interval")
        let first = batch(batcher.tick(now: t0 + 0.2))
        #expect(first?.offsets == [0: 1], "offset 1 still runs, so 2 waits")
        #expect(first?.records.map(\.key) == [Array("a".utf8)])
        #expect(first?.stateRecords.count == 1)
        #expect(batch(batcher.tick(now: t0 + 0.3)) == nil, "one transaction at a time")
        _ = batcher.commitSucceeded(batchId: first!.id, now: t0 + 0.3)
        _ = batcher.finished(partition: 0, offset: 1, result: result("b"), now: t0 + 0.3)
        let second = batch(batcher.tick(now: t0 + 0.5))
        #expect(second?.offsets == [0: 3])
        #expect(second?.records.map(\.key) == [Array("b".utf8), Array("c".utf8)])
    }

    @Test func commitsByCount() {
        var configuration = TransactionBatcher.Configuration()
        configuration.maxJobs = 3
        configuration.commitInterval = .seconds(60)
        let batcher = TransactionBatcher(configuration: configuration)
        batcher.assign([0, 1])
        var actions: [TransactionBatcher.Action] = []
        for offset in Int64(0)..<3 {
            _ = batcher.consumed(partition: offset == 1 ? 1 : 0, offset: offset)
            actions.append(batcher.finished(partition: offset == 1 ? 1 : 0, offset: offset, result: result("\(offset)")))
        }
        let committed = actions.compactMap(batch)
        #expect(committed.count == 1)
        #expect(committed.first?.offsets == [0: 3, 1: 2])
        #expect(committed.first?.jobCount == 3)
    }

    @Test func anAbortRetriesTheSameOutputThenGivesUp() {
        var configuration = TransactionBatcher.Configuration()
        configuration.maxAttempts = 2
        let batcher = TransactionBatcher(configuration: configuration)
        batcher.assign([0])
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        let first = batch(batcher.flush())!
        let retry = batch(batcher.commitFailed(batchId: first.id, fatal: false, reason: "abortable"))
        #expect(retry?.attempt == 2)
        #expect(retry?.records == first.records)
        #expect(retry?.offsets == first.offsets)
        guard case .stop = batcher.commitFailed(batchId: first.id, fatal: false, reason: "abortable") else {
            Issue.record("expected stop after maxAttempts")
            return
        }
        #expect(batcher.counts.aborts == 2)
    }

    @Test func aFencedProducerStopsTheWorker() {
        let batcher = TransactionBatcher()
        batcher.assign([0])
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        let first = batch(batcher.flush())!
        guard case .stop(let reason) = batcher.commitFailed(batchId: first.id, fatal: true, reason: "fenced") else {
            Issue.record("expected stop")
            return
        }
        #expect(reason == "fenced")
        guard case .stop = batcher.flush() else {
            Issue.record("a stopped batcher stays stopped")
            return
        }
    }

    @Test func revocationForgetsUncommittedWork() {
        let batcher = TransactionBatcher()
        batcher.assign([0, 1])
        _ = batcher.consumed(partition: 1, offset: 0)
        _ = batcher.finished(partition: 1, offset: 0, result: result("a"))
        #expect(batcher.hasUncommitted(partitions: [1]))
        batcher.revoke([1])
        #expect(!batcher.hasUncommitted(partitions: [1]))
        #expect(batch(batcher.flush()) == nil)
        #expect(!batcher.consumed(partition: 1, offset: 1))
    }

    @Test("a batch in flight when one of its partitions is revoked is abandoned, never written without its offsets")
    func revocationInvalidatesTheBatchInFlight() {
        let batcher = TransactionBatcher()
        batcher.assign([0, 1])
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.consumed(partition: 1, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        _ = batcher.finished(partition: 1, offset: 0, result: result("b"))
        let inFlight = batch(batcher.flush())!
        #expect(batcher.isValid(batchId: inFlight.id))
        // The commit failed mid-rebalance; before its retry runs, partition 1 is revoked (and given back).
        let retry = batch(batcher.commitFailed(batchId: inFlight.id, fatal: false, groupRebalancing: true, reason: "rebalance"))!
        batcher.revoke([1])
        batcher.assign([1])
        #expect(!batcher.isValid(batchId: retry.id), "its offsets for partition 1 belong to the old assignment")
        // Partition 0 was never revoked: its job's output comes back in the next batch, never its offset alone.
        let next = batch(batcher.abandon(batchId: retry.id))
        #expect(next?.offsets == [0: 1])
        #expect(next?.records.map(\.key) == [Array("a".utf8)])
        #expect(next.map { batcher.isValid(batchId: $0.id) } == true)
        _ = batcher.commitSucceeded(batchId: next!.id)
        // The re-consumed job of partition 1 is tracked afresh and commits with its own output.
        #expect(batcher.consumed(partition: 1, offset: 0))
        _ = batcher.finished(partition: 1, offset: 0, result: result("b"))
        let last = batch(batcher.flush())
        #expect(last?.offsets == [1: 1])
        #expect(last?.records.map(\.key) == [Array("b".utf8)])
    }

    @Test("commits refused because the group is rebalancing are retried without counting toward giving up")
    func rebalancingRetriesDoNotCount() {
        var configuration = TransactionBatcher.Configuration()
        configuration.maxAttempts = 1
        let batcher = TransactionBatcher(configuration: configuration)
        batcher.assign([0])
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        let first = batch(batcher.flush())!
        for _ in 0..<10 {
            #expect(batch(batcher.commitFailed(batchId: first.id, fatal: false, groupRebalancing: true, reason: "r")) != nil)
        }
    }
}
