import Foundation
import Synchronization
import Testing
@testable import Worker
import SyncModel

/// Outputs and batches that the batcher and state machine tests share.
enum BatchFixtures {
    static func result(_ name: String) -> JobResult {
        var result = JobResult(outcome: .synced)
        result.records = [OutgoingRecord(topic: "activities", key: name, value: Array(name.utf8))]
        result.stateRecords = [OutgoingRecord(topic: "state", partition: 0, key: name, value: [])]
        return result
    }

    static func batch(_ action: TransactionBatcher.Action) -> TransactionBatcher.Batch? {
        if case .commit(let batch) = action { return batch }
        return nil
    }

    static let aborted = TransactionBatcher.CommitFailure.aborted(
        reason: "abortable", rebalancing: false, recordRejected: false)
    static let rebalancing = TransactionBatcher.CommitFailure.aborted(
        reason: "REBALANCE_IN_PROGRESS", rebalancing: true, recordRejected: false)
    static let rejected = TransactionBatcher.CommitFailure.aborted(
        reason: "MSG_SIZE_TOO_LARGE", rebalancing: false, recordRejected: true)

    /// A dead letter that names the job, so tests can see which job was dead-lettered.
    static let deadLetter: @Sendable (JobOrigin?, Int32, Int64, String) -> JobResult = { _, partition, offset, reason in
        var result = JobResult(outcome: .deadLettered)
        result.records = [
            OutgoingRecord(topic: "dlq", key: "p\(partition)o\(offset)", value: Array(reason.utf8))
        ]
        return result
    }
}

@Suite struct TransactionBatcherTests {
    let result = BatchFixtures.result
    let batch = BatchFixtures.batch

    @Test func commitsByTimeOnlyTheContiguousPrefix() {
        var configuration = TransactionBatcher.Configuration()
        configuration.commitInterval = .milliseconds(100)
        var batcher = TransactionBatcher(configuration: configuration)
        let t0 = Date()
        batcher.assign([0])
        for offset in Int64(0)...2 {
            let taken = batcher.consumed(partition: 0, offset: offset)
            #expect(taken)
        }
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
        var batcher = TransactionBatcher(configuration: configuration)
        batcher.assign([0, 1])
        var actions: [TransactionBatcher.Action] = []
        for offset in Int64(0)..<3 {
            _ = batcher.consumed(partition: offset == 1 ? 1 : 0, offset: offset)
            actions.append(
                batcher.finished(partition: offset == 1 ? 1 : 0, offset: offset, result: result("\(offset)")))
        }
        let committed = actions.compactMap(batch)
        #expect(committed.count == 1)
        #expect(committed.first?.offsets == [0: 3, 1: 2])
        #expect(committed.first?.jobCount == 3)
    }

    @Test func anAbortRetriesTheSameOutputThenGivesUp() {
        var configuration = TransactionBatcher.Configuration()
        configuration.maxAttempts = 2
        var batcher = TransactionBatcher(configuration: configuration)
        batcher.assign([0])
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        let first = batch(batcher.flush())!
        let retry = batch(batcher.commitFailed(batchId: first.id, failure: BatchFixtures.aborted))
        #expect(retry?.attempt == 2)
        #expect(retry?.records == first.records)
        #expect(retry?.offsets == first.offsets)
        guard case .stop(let error) = batcher.commitFailed(batchId: first.id, failure: BatchFixtures.aborted) else {
            Issue.record("expected stop after maxAttempts")
            return
        }
        #expect(!error.isFenced)
        #expect(batcher.counts.aborts == 2)
    }

    @Test func aFencedProducerStopsTheWorkerAndStaysStopped() {
        var batcher = TransactionBatcher()
        batcher.assign([0])
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        let first = batch(batcher.flush())!
        let fenced = WorkerError.fenced("PRODUCER_FENCED")
        guard case .stop(let error) = batcher.commitFailed(batchId: first.id, failure: .fatal(fenced)) else {
            Issue.record("expected stop")
            return
        }
        #expect(error.isFenced)
        #expect(error.exitCode == 3)
        guard case .stop = batcher.flush() else {
            Issue.record("a stopped batcher stays stopped")
            return
        }
    }

    @Test func revocationForgetsUncommittedWork() {
        var batcher = TransactionBatcher()
        batcher.assign([0, 1])
        _ = batcher.consumed(partition: 1, offset: 0)
        _ = batcher.finished(partition: 1, offset: 0, result: result("a"))
        #expect(batcher.hasCommittable(partitions: [1]))
        batcher.revoke([1])
        #expect(!batcher.hasCommittable(partitions: [1]))
        #expect(batch(batcher.flush()) == nil)
        let taken = batcher.consumed(partition: 1, offset: 1)
        #expect(!taken)
    }

    @Test("a batch in flight when one of its partitions is revoked is abandoned, never written without its offsets")
    func revocationInvalidatesTheBatchInFlight() {
        var batcher = TransactionBatcher()
        batcher.assign([0, 1], generation: 1)
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.consumed(partition: 1, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        _ = batcher.finished(partition: 1, offset: 0, result: result("b"))
        let inFlight = batch(batcher.flush())!
        #expect(batcher.isValid(batchId: inFlight.id))
        #expect(inFlight.generation == 1)
        // The commit failed mid-rebalance; before its retry runs, partition 1 is revoked (and given back).
        let retry = batch(batcher.commitFailed(batchId: inFlight.id, failure: BatchFixtures.rebalancing))!
        batcher.revoke([1])
        batcher.assign([1], generation: 2)
        #expect(!batcher.isValid(batchId: retry.id), "its offsets for partition 1 belong to the old assignment")
        // Partition 0 was never revoked: its job's output comes back in the next batch, never its offset alone.
        let next = batch(batcher.abandon(batchId: retry.id))
        #expect(next?.offsets == [0: 1])
        #expect(next?.records.map(\.key) == [Array("a".utf8)])
        #expect(next?.generation == 2, "rebuilt in, and bound to, the current assignment")
        #expect(next.map { batcher.isValid(batchId: $0.id) } == true)
        _ = batcher.commitSucceeded(batchId: next!.id)
        // The re-consumed job of partition 1 is tracked afresh and commits with its own output.
        let taken = batcher.consumed(partition: 1, offset: 0)
        #expect(taken)
        _ = batcher.finished(partition: 1, offset: 0, result: result("b"))
        let last = batch(batcher.flush())
        #expect(last?.offsets == [1: 1])
        #expect(last?.records.map(\.key) == [Array("b".utf8)])
    }

    @Test("a batch built in one assignment is never valid in the next, even for the same partitions")
    func aBatchIsBoundToItsGeneration() {
        var batcher = TransactionBatcher()
        batcher.assign([0], generation: 7)
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        let built = batch(batcher.flush())!
        #expect(built.generation == 7)
        batcher.assign([3], generation: 8)  // a new assignment without a revocation of 0 seen (lost event)
        #expect(!batcher.isValid(batchId: built.id))
    }

    @Test("commits refused because the group is rebalancing are retried without counting toward giving up")
    func rebalancingRetriesDoNotCount() {
        var configuration = TransactionBatcher.Configuration()
        configuration.maxAttempts = 1
        var batcher = TransactionBatcher(configuration: configuration)
        batcher.assign([0])
        _ = batcher.consumed(partition: 0, offset: 0)
        _ = batcher.finished(partition: 0, offset: 0, result: result("a"))
        let first = batch(batcher.flush())!
        for _ in 0..<10 {
            #expect(batch(batcher.commitFailed(batchId: first.id, failure: BatchFixtures.rebalancing)) != nil)
        }
    }

    @Test("a refused record splits the batch into single jobs; only the job that made it is dead-lettered")
    func aRefusedRecordDeadLettersOnlyItsJob() {
        var configuration = TransactionBatcher.Configuration()
        configuration.maxAttempts = 1
        var batcher = TransactionBatcher(configuration: configuration, deadLetter: BatchFixtures.deadLetter)
        batcher.assign([0])
        for offset in Int64(0)..<3 {
            _ = batcher.consumed(partition: 0, offset: offset)
            _ = batcher.finished(partition: 0, offset: offset, result: result("job\(offset)"))
        }
        let whole = batch(batcher.flush())!
        #expect(whole.jobCount == 3)
        // The cluster refuses a record of the batch: never a stop, however often (maxAttempts is 1).
        let first = batch(batcher.commitFailed(batchId: whole.id, failure: BatchFixtures.rejected))!
        #expect(first.jobCount == 1)
        #expect(first.offsets == [0: 1])
        #expect(first.records.map(\.key) == [Array("job0".utf8)])
        let second = batch(batcher.commitSucceeded(batchId: first.id))!
        #expect(second.jobCount == 1)
        #expect(second.offsets == [0: 2])
        // job1 made the bad record: alone, it is refused again, and its output becomes a dead letter.
        let replaced = batch(batcher.commitFailed(batchId: second.id, failure: BatchFixtures.rejected))!
        #expect(replaced.offsets == [0: 2])
        #expect(replaced.records.map(\.topic) == ["dlq"])
        #expect(replaced.records.map(\.key) == [Array("p0o1".utf8)])
        #expect(replaced.stateRecords.isEmpty, "the refused job's state is not written")
        let third = batch(batcher.commitSucceeded(batchId: replaced.id))!
        #expect(third.offsets == [0: 3])
        #expect(third.records.map(\.key) == [Array("job2".utf8)])
        #expect(batch(batcher.commitSucceeded(batchId: third.id)) == nil)
        // Back to normal batching once the split batch is through.
        for offset in Int64(3)..<5 {
            _ = batcher.consumed(partition: 0, offset: offset)
            _ = batcher.finished(partition: 0, offset: offset, result: result("job\(offset)"))
        }
        #expect(batch(batcher.flush())?.jobCount == 2)
    }

    @Test("a refused dead letter is replaced by one without the original; refused again, the worker stops")
    func aRefusedDeadLetterFallsBackThenStops() {
        let origins = Mutex<[Bool]>([])
        var batcher = TransactionBatcher { origin, partition, offset, reason in
            origins.withLock { $0.append(origin?.value != nil) }
            return BatchFixtures.deadLetter(origin, partition, offset, reason)
        }
        batcher.assign([0])
        _ = batcher.consumed(partition: 0, offset: 0)
        let origin = JobOrigin(topic: "jobs", partition: 0, offset: 0, key: nil, value: Array(repeating: 0, count: 10))
        _ = batcher.finished(partition: 0, offset: 0, result: result("huge"), origin: origin)
        var current = batch(batcher.flush())!
        current = batch(batcher.commitFailed(batchId: current.id, failure: BatchFixtures.rejected))!
        current = batch(batcher.commitFailed(batchId: current.id, failure: BatchFixtures.rejected))!
        #expect(origins.withLock { $0 } == [true, false], "the second dead letter leaves the original out")
        #expect(current.offsets == [0: 1])
        guard case .stop(let error) = batcher.commitFailed(batchId: current.id, failure: BatchFixtures.rejected) else {
            Issue.record("a dead-letter topic that refuses everything must stop the worker, not loop")
            return
        }
        #expect("\(error)".contains("max.message.bytes"))
    }

    @Test("behind a slow head, jobs finished out of order commit in offset order, timed by the oldest waiting one")
    func outOfOrderBehindASlowHead() {
        var configuration = TransactionBatcher.Configuration()
        configuration.commitInterval = .milliseconds(100)
        configuration.maxJobs = 1000
        var batcher = TransactionBatcher(configuration: configuration)
        let t0 = Date()
        batcher.assign([0])
        for offset in Int64(0)..<8 { _ = batcher.consumed(partition: 0, offset: offset) }
        // 0 is stuck; the others finish in a scrambled order, each a little later.
        for (index, offset) in [5, 2, 7, 1, 3, 6].enumerated() {
            _ = batcher.finished(
                partition: 0, offset: Int64(offset), result: result("j\(offset)"), now: t0 + Double(index))
        }
        #expect(batch(batcher.tick(now: t0 + 100)) == nil, "nothing is committable while 0 runs")
        _ = batcher.finished(partition: 0, offset: 0, result: result("j0"), now: t0 + 100)
        var first = batch(batcher.tick(now: t0 + 100.2))!
        #expect(first.offsets == [0: 4], "4 still runs")
        #expect(first.records.map { String(decoding: $0.key ?? [], as: UTF8.self) } == ["j0", "j1", "j2", "j3"])
        // Abandoned (as after a revocation of another partition): the jobs go back, still in offset order.
        first = batch(batcher.abandon(batchId: first.id, now: t0 + 100.3))!
        #expect(first.records.map { String(decoding: $0.key ?? [], as: UTF8.self) } == ["j0", "j1", "j2", "j3"])
        _ = batcher.commitSucceeded(batchId: first.id, now: t0 + 100.4)
        // 5 (finished at t0) and 6, 7 wait; the oldest of them sets the clock: the next tick after 4 finishes commits.
        _ = batcher.finished(partition: 0, offset: 4, result: result("j4"), now: t0 + 100.5)
        let second = batch(batcher.tick(now: t0 + 100.51))
        #expect(second?.offsets == [0: 8])
        #expect(second?.records.map { String(decoding: $0.key ?? [], as: UTF8.self) } == ["j4", "j5", "j6", "j7"])
        #expect(batcher.uncommitted(partition: 0).jobs == 4)
    }

    /// The batcher against a brute-force model of what it decides (every waiting job scanned for the oldest and
    /// the count, each partition's committable prefix walked): random consumes with gaps, finishes in any order,
    /// ticks, commits, retried and abandoned batches.
    @Test("the indexed batcher decides what a full rescan would", arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func matchesAFullRescan(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        var configuration = TransactionBatcher.Configuration()
        configuration.commitInterval = .milliseconds(100)
        configuration.maxJobs = 7
        configuration.maxAttempts = 1_000_000
        var batcher = TransactionBatcher(configuration: configuration)
        batcher.assign([0, 1])
        // Consumed and not committed, per partition, with the finish time once finished.
        var consumed: [Int32: [(offset: Int64, at: Date?)]] = [0: [], 1: []]
        var last: [Int32: Int64] = [0: 0, 1: 0]
        var inFlight: TransactionBatcher.Batch?
        var now = Date(timeIntervalSince1970: 1_000_000)
        var committed: [Int32: [Int64]] = [0: [], 1: []]

        /// Finished jobs not in the batch in flight.
        func waiting() -> [(partition: Int32, offset: Int64, at: Date)] {
            consumed.flatMap { partition, jobs in
                jobs.compactMap { job in
                    let inBatch = inFlight?.offsets[partition].map { job.offset < $0 } == true
                    return job.at.flatMap { at in inBatch ? nil : (partition, job.offset, at) }
                }
            }
        }
        func committable() -> [Int32: Int64] {
            var result: [Int32: Int64] = [:]
            for (partition, jobs) in consumed {
                var end: Int64?
                for job in jobs {
                    guard let _ = job.at else { break }
                    end = job.offset + 1
                }
                if let end { result[partition] = end }
            }
            return result
        }
        /// Checks a batch was built exactly when due: `always`, or by the count of waiting jobs, or by the age of
        /// the oldest one, as the event that returned `action` decides.
        func check(_ action: TransactionBatcher.Action, byCount: Bool, byAge: Bool, always: Bool = false) {
            let pending = waiting()
            let oldest = pending.map(\.at).min()
            let old = oldest.map { now.timeIntervalSince($0) >= configuration.commitInterval.timeInterval } == true
            let due =
                inFlight == nil && !committable().isEmpty
                && (always || (byCount && pending.count >= configuration.maxJobs) || (byAge && old))
            guard case .commit(let batch) = action else {
                #expect(!due, "seed \(seed): a due batch was not built")
                return
            }
            #expect(due, "seed \(seed): a batch was built before it was due")
            #expect(batch.offsets == committable(), "seed \(seed)")
            for (partition, end) in batch.offsets {
                let offsets = batch.records.filter { $0.topic == "p\(partition)" }
                    .map { Int64(String(decoding: $0.key ?? [], as: UTF8.self))! }
                #expect(offsets == consumed[partition]!.map(\.offset).filter { $0 < end }, "seed \(seed): offset order")
            }
            inFlight = batch
        }
        for _ in 0..<4000 {
            now += Double(rng.next() % 40) / 1000
            switch rng.next() % 11 {
            case 0, 1, 2:
                let partition = Int32(rng.next() % 2)
                last[partition]! += Int64(1 + rng.next() % 2)  // gaps, as transaction markers leave
                _ = batcher.consumed(partition: partition, offset: last[partition]!)
                consumed[partition]!.append((last[partition]!, nil))
            case 3, 4, 5:
                let partition = Int32(rng.next() % 2)
                let open = consumed[partition]!.indices.filter { consumed[partition]![$0].at == nil }
                guard !open.isEmpty else { continue }
                // Mostly the oldest running job, sometimes any (the head may be stuck for a while).
                let index = rng.next() % 3 == 0 ? open[Int(rng.next() % UInt64(open.count))] : open[0]
                consumed[partition]![index].at = now
                var output = JobResult(outcome: .synced)
                output.records = [
                    OutgoingRecord(topic: "p\(partition)", key: "\(consumed[partition]![index].offset)", value: [])
                ]
                let action = batcher.finished(
                    partition: partition, offset: consumed[partition]![index].offset, result: output, now: now)
                check(action, byCount: true, byAge: false)
            case 6, 7:
                check(batcher.tick(now: now), byCount: false, byAge: true)
            case 8, 9:
                guard let batch = inFlight else { continue }
                inFlight = nil
                for (partition, end) in batch.offsets {
                    committed[partition]! += consumed[partition]!.map(\.offset).filter { $0 < end }
                    consumed[partition]!.removeAll { $0.offset < end }
                }
                check(batcher.commitSucceeded(batchId: batch.id, now: now), byCount: true, byAge: true)
            default:
                guard let batch = inFlight else { continue }
                if rng.next() % 2 == 0 {
                    // Retried: the same batch again.
                    let again = BatchFixtures.batch(
                        batcher.commitFailed(batchId: batch.id, failure: BatchFixtures.aborted, now: now))
                    #expect(again?.offsets == batch.offsets && again?.records.count == batch.records.count)
                    inFlight = again
                } else {
                    // Abandoned: its jobs wait again, and the next batch is built from everything waiting.
                    inFlight = nil
                    check(batcher.abandon(batchId: batch.id, now: now), byCount: false, byAge: false, always: true)
                }
            }
        }
        for (partition, offsets) in committed {
            #expect(offsets == offsets.sorted() && Set(offsets).count == offsets.count, "seed \(seed), \(partition)")
        }
        #expect(committed.values.map(\.count).reduce(0, +) > 500, "the run commits a fair amount")
    }
}

/// A small deterministic generator for the model test.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
