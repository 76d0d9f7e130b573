import Foundation
import SyncModel
import Testing

@testable import Worker

/// The worker's decisions without Kafka: ownership, hand-over and batches, driven event by event.
@Suite struct WorkerStateMachineTests {
    func job(_ account: String, tick: Int) -> SyncJob {
        SyncJob(
            accountId: account, integration: "github",
            scheduledAt: Date(timeIntervalSince1970: 1_700_000_000 + Double(tick) * 60),
            jobId: "\(account)@\(tick)")
    }

    func origin(_ partition: Int32, _ offset: Int64) -> JobOrigin {
        JobOrigin(topic: "jobs", partition: partition, offset: offset, key: nil, value: nil)
    }

    func started(_ action: WorkerStateMachine.Action) -> [WorkerStateMachine.QueuedJob] {
        if case .start(let jobs) = action { return jobs }
        return []
    }

    /// A machine owning `partitions`, restored with no state.
    func machine(owning partitions: [Int32], concurrency: Int = 8) -> (WorkerStateMachine, Int) {
        var machine = WorkerStateMachine(
            concurrency: concurrency, batcher: TransactionBatcher(deadLetter: BatchFixtures.deadLetter))
        let generation = machine.assigned(partitions)
        for partition in partitions {
            machine.restored(partition: partition, generation: generation, states: [:])
        }
        return (machine, generation)
    }

    /// Consumes and starts one job, returning it as the machine handed it out.
    func run(_ machine: inout WorkerStateMachine, _ account: String, tick: Int, at origin: JobOrigin)
        -> WorkerStateMachine.QueuedJob?
    {
        guard machine.consumed(partition: origin.partition, offset: origin.offset) else { return nil }
        return started(machine.accept(job(account, tick: tick), origin: origin)).first
    }

    /// Runs one job of account "a" on partition 0 to completion and returns the batch that commits it.
    func batchInFlight(_ machine: inout WorkerStateMachine) throws -> TransactionBatcher.Batch {
        let queued = try #require(run(&machine, "a", tick: 1, at: origin(0, 0)))
        _ = machine.finished(queued, result: BatchFixtures.result("a"), statusRecord: nil)
        guard case .commit(let batch) = machine.flush() else { throw BatchExpected() }
        return batch
    }

    struct BatchExpected: Error {}

    @Test("a restore counts only for the assignment it was started in")
    func aRestoreCountsForItsOwnAssignment() {
        var machine = WorkerStateMachine(concurrency: 4, batcher: TransactionBatcher())
        let generation = machine.assigned([0])
        #expect(machine.ownership(0) == .restoring)
        #expect(machine.ownedPartitions.isEmpty)
        machine.restored(partition: 0, generation: generation + 1, states: [:])
        #expect(machine.ownership(0) == .restoring, "a restore of another assignment does not count")
        machine.restored(partition: 0, generation: generation, states: [:])
        #expect(machine.ownedPartitions == [0])
    }

    @Test("a partition is not handed over while a batch holding it is being written")
    func revocationWaitsForTheBatchInFlight() throws {
        var (machine, _) = machine(owning: [0, 1])
        let batch = try batchInFlight(&machine)
        _ = machine.beginRevocation([0, 1], lost: false)
        #expect(machine.isWriting([0]), "the service keeps the revocation open while this is true")
        #expect(machine.hasCommittable([0]))
        #expect(!machine.isWriting([1]))
        // Nothing new is taken for a partition being handed over.
        let taken = machine.consumed(partition: 0, offset: 1)
        #expect(!taken)
        // The write commits: only now is the partition settled.
        _ = machine.commitSucceeded(batch)
        #expect(!machine.isWriting([0]))
        #expect(!machine.hasCommittable([0, 1]))
        machine.finishRevocation([0, 1])
        #expect(machine.assignedCount == 0)
    }

    @Test("an abort during a revocation is final: the batch is not retried under the next generation")
    func anAbortDuringRevocationIsNotRetried() throws {
        var (machine, _) = machine(owning: [0])
        let batch = try batchInFlight(&machine)
        _ = machine.beginRevocation([0], lost: false)
        // The group is rebalancing: outside a revocation this would be retried; here the partition's output is
        // dropped and the next owner re-runs the job from the committed offset.
        let action = machine.commitFailed(batch, failure: BatchFixtures.rebalancing)
        if case .commit = action { Issue.record("must not retry a batch of a partition being handed over") }
        #expect(!machine.isWriting([0]))
        #expect(!machine.hasCommittable([0]))
        #expect(!machine.mayWrite(batch))
    }

    /// The broker-restart run that lost notification versions: a batch was still being written when the broker's
    /// outage outlasted the session, the partition came back in a new assignment and its jobs ran again, and the old
    /// batch's failure arrived during the next hand-over. Only the old batch is dropped; the new assignment's output
    /// is still committed before the hand-over, since its jobs read GitHub already and a thread version they were
    /// handed may be gone by the time the next owner runs them again.
    @Test("an earlier assignment's batch failing during a revocation drops only itself; this one's output commits")
    func aStaleBatchFailingDuringRevocationKeepsTheCurrentOutput() throws {
        var (machine, _) = machine(owning: [0])
        let stale = try batchInFlight(&machine)
        _ = machine.beginRevocation([0], lost: true)
        let generation = machine.assigned([0])
        machine.restored(partition: 0, generation: generation, states: [:])
        let again = try #require(run(&machine, "a", tick: 1, at: origin(0, 0)))
        let result = BatchFixtures.result("a again")
        if case .commit = machine.finished(again, result: result, statusRecord: nil).commit {
            Issue.record("one transaction at a time: the old batch is still in flight")
        }
        _ = machine.beginRevocation([0], lost: false)
        let action = machine.commitFailed(stale, failure: BatchFixtures.rebalancing)
        guard case .commit(let batch) = action else {
            Issue.record("this assignment's finished output must still be committed before the hand-over: \(action)")
            return
        }
        #expect(batch.generation == generation)
        #expect(batch.offsets == [0: 1])
        #expect(batch.records == result.records)
        #expect(machine.mayWrite(batch))
        _ = machine.commitSucceeded(batch)
        #expect(!machine.hasCommittable([0]), "settled: the partition can be handed over")
    }

    @Test("a fatal failure during a revocation ends the wait: nothing is left in flight")
    func aFatalFailureDuringRevocationLeavesNothingInFlight() throws {
        var (machine, _) = machine(owning: [0])
        let batch = try batchInFlight(&machine)
        _ = machine.beginRevocation([0], lost: false)
        #expect(machine.isWriting([0]))
        guard
            case .stop(let error) = machine.commitFailed(batch, failure: .fatal(WorkerError.fenced("PRODUCER_FENCED")))
        else {
            Issue.record("a fenced producer stops the worker")
            return
        }
        #expect(error.isFenced)
        #expect(!machine.isWriting([0]), "the revocation waiting for this batch must be able to finish")
    }

    @Test("a job whose output the cluster refused leaves its account's state as it was before the job")
    func aRefusedJobDoesNotAdvanceTheState() throws {
        var (machine, _) = machine(owning: [0])
        let first = try #require(run(&machine, "a", tick: 1, at: origin(0, 0)))
        var result = BatchFixtures.result("a1")
        result.newState = StateRecord(
            accountId: "a", integration: "github", lastJob: JobMarker(jobId: "a@1", scheduledAt: Date()),
            updatedAt: Date(), data: ["watermark": "after a@1"], credentials: nil)
        let next = machine.finished(first, result: result, statusRecord: nil)
        #expect(next.start.isEmpty)
        guard case .commit(let batch) = machine.flush() else { throw BatchExpected() }
        // The record is refused: the job alone is dead-lettered (a one-job batch goes straight to a dead letter).
        guard case .commit(let replaced) = machine.commitFailed(batch, failure: BatchFixtures.rejected) else {
            throw BatchExpected()
        }
        #expect(replaced.records.map(\.topic) == ["dlq"])
        let second = try #require(run(&machine, "a", tick: 2, at: origin(0, 1)))
        #expect(machine.state(for: second) == nil, "the next job starts from the state before the refused one")
    }

    @Test("a refused job's state is not undone under a later job of the account that already ran on it")
    func aRefusalDoesNotRollBackUnderALaterJob() throws {
        var (machine, _) = machine(owning: [0])
        let at = Date(timeIntervalSince1970: 1_800_000_000)
        func state(_ tick: Int) -> StateRecord {
            StateRecord(
                accountId: "a", integration: "github", lastJob: JobMarker(jobId: "a@\(tick)", scheduledAt: at),
                updatedAt: at, data: ["watermark": .string("after a@\(tick)")], credentials: nil)
        }
        let first = try #require(run(&machine, "a", tick: 1, at: origin(0, 0)))
        var result = BatchFixtures.result("a1")
        result.newState = state(1)
        _ = machine.finished(first, result: result, statusRecord: nil)
        guard case .commit(let batch) = machine.flush() else { throw BatchExpected() }
        // While that batch is being written, the account's next job runs on its state (pipelined).
        let second = try #require(run(&machine, "a", tick: 2, at: origin(0, 1)))
        #expect(machine.state(for: second) == state(1))
        var secondResult = BatchFixtures.result("a2")
        secondResult.newState = state(2)
        _ = machine.finished(second, result: secondResult, statusRecord: nil)
        // Now the first batch's output is refused and becomes a dead letter.
        guard case .commit = machine.commitFailed(batch, failure: BatchFixtures.rejected) else { throw BatchExpected() }
        // The second job's output (built on the first's state) is still to be committed: the third job must start
        // from it, not from before the first, or it would emit the second job's items again.
        let third = try #require(run(&machine, "a", tick: 3, at: origin(0, 2)))
        #expect(machine.state(for: third) == state(2))
    }

    @Test("a slow job at a partition's head pauses that partition alone once it holds the limit; its commit resumes it")
    func aSlowHeadPausesOnlyItsPartition() throws {
        var (machine, _) = machine(owning: [0, 1], concurrency: 64)
        // The head job of partition 0 runs on; later jobs of other accounts there finish behind it.
        let head = try #require(run(&machine, "slow", tick: 1, at: origin(0, 0)))
        var paused: [[Int32]] = []
        for offset in 1...6 {
            let queued = try #require(run(&machine, "a\(offset)", tick: 1, at: origin(0, Int64(offset))))
            _ = machine.finished(queued, result: BatchFixtures.result("a\(offset)"), statusRecord: nil)
            paused.append(machine.backpressure(maxJobs: 5, maxBytes: 1 << 20).pause)
        }
        // Partition 1 keeps going: its jobs commit.
        let other = try #require(run(&machine, "b", tick: 1, at: origin(1, 0)))
        _ = machine.finished(other, result: BatchFixtures.result("b"), statusRecord: nil)
        #expect(paused.flatMap { $0 } == [0], "paused once, at the fifth uncommitted job of partition 0: \(paused)")
        #expect(machine.backpressure(maxJobs: 5, maxBytes: 1 << 20).pause.isEmpty, "partition 1 is not paused")
        // The head finishes; the partition's output commits; it resumes.
        _ = machine.finished(head, result: BatchFixtures.result("slow"), statusRecord: nil)
        guard case .commit(let batch) = machine.flush() else { throw BatchExpected() }
        #expect(batch.offsets[0] == 7)
        _ = machine.commitSucceeded(batch)
        #expect(machine.backpressure(maxJobs: 5, maxBytes: 1 << 20).resume == [0])
    }

    @Test("finished output waiting for its commit counts in bytes, until the commit")
    func uncommittedOutputBytesPause() throws {
        var (machine, _) = machine(owning: [0])
        let queued = try #require(run(&machine, "a", tick: 1, at: origin(0, 0)))
        #expect(machine.backpressure(maxJobs: 100, maxBytes: 10).pause.isEmpty, "nothing finished yet")
        _ = machine.finished(queued, result: BatchFixtures.result("a-with-some-output"), statusRecord: nil)
        #expect(machine.backpressure(maxJobs: 100, maxBytes: 10).pause == [0])
        guard case .commit(let batch) = machine.flush() else { throw BatchExpected() }
        #expect(machine.backpressure(maxJobs: 100, maxBytes: 10).resume.isEmpty, "written, not yet committed")
        _ = machine.commitSucceeded(batch)
        #expect(machine.backpressure(maxJobs: 100, maxBytes: 10).resume == [0])
    }

    @Test("outside a revocation a rebalancing failure is retried with the same output")
    func aRebalancingFailureOutsideARevocationIsRetried() throws {
        var (machine, _) = machine(owning: [0])
        let batch = try batchInFlight(&machine)
        guard case .commit(let retry) = machine.commitFailed(batch, failure: BatchFixtures.rebalancing) else {
            Issue.record("expected a retry")
            return
        }
        #expect(retry.records == batch.records)
        #expect(machine.mayWrite(retry))
    }

    @Test("a job that finishes after its partition moved on counts for nothing, even if the partition came back")
    func aJobFromAnEarlierAssignmentIsDiscarded() {
        var (machine, _) = machine(owning: [0])
        let queued = run(&machine, "a", tick: 1, at: origin(0, 0))!
        _ = machine.beginRevocation([0], lost: false)
        machine.finishRevocation([0])  // the revocation deadline passed with the job still running
        let generation = machine.assigned([0])
        machine.restored(partition: 0, generation: generation, states: [:])
        let late = machine.finished(queued, result: BatchFixtures.result("a"), statusRecord: nil)
        if case .commit = late.commit { Issue.record("output of the old assignment must not be committed") }
        if case .commit = machine.flush() { Issue.record("nothing of the old assignment is committable") }
        // The job is consumed again in the new assignment and runs for real.
        let again = run(&machine, "a", tick: 1, at: origin(0, 0))
        #expect(again?.generation == generation)
    }

    @Test("a lost partition drops everything at once: its running jobs' output is never committed")
    func aLostPartitionIsDroppedAtOnce() {
        var (machine, _) = machine(owning: [0])
        let queued = run(&machine, "a", tick: 1, at: origin(0, 0))!
        _ = machine.beginRevocation([0], lost: true)
        #expect(machine.assignedCount == 0)
        let late = machine.finished(queued, result: BatchFixtures.result("a"), statusRecord: nil)
        if case .commit = late.commit { Issue.record("a lost partition's output must not be committed") }
        #expect(machine.buffered == 0)
    }

    @Test("one account's jobs run one at a time; revocation drops the waiting ones")
    func accountsRunOneJobAtATime() {
        var (machine, _) = machine(owning: [0])
        let first = run(&machine, "a", tick: 1, at: origin(0, 0))
        #expect(first != nil)
        let second = run(&machine, "a", tick: 2, at: origin(0, 1))
        #expect(second == nil, "waits behind tick 1")
        #expect(machine.buffered == 2)
        let next = machine.finished(first!, result: BatchFixtures.result("a1"), statusRecord: nil)
        #expect(next.start.map(\.job.jobId) == ["a@2"])
        let third = run(&machine, "a", tick: 3, at: origin(0, 2))
        #expect(third == nil)
        let dropped = machine.beginRevocation([0], lost: false)
        #expect(dropped == 1, "tick 3 never started: the next owner runs it")
    }

    @Test("a status record is written only when the account's status changes")
    func statusRecordsOnlyOnChange() {
        var (machine, _) = machine(owning: [0])
        let status = OutgoingRecord(topic: "status", key: "a", value: Array("ok".utf8))
        var written: [Int] = []
        for tick in 1...3 {
            let queued = run(&machine, "a", tick: tick, at: origin(0, Int64(tick)))!
            var result = BatchFixtures.result("a\(tick)")
            result.status = AccountStatus(accountId: "a", integration: "github", status: .ok, reason: nil, at: Date())
            _ = machine.finished(queued, result: result, statusRecord: status)
            guard case .commit(let batch) = machine.flush() else { continue }
            written.append(batch.records.filter { $0.topic == "status" }.count)
            _ = machine.commitSucceeded(batch)
        }
        #expect(written == [1, 0, 0])
    }

    @Test("draining drops waiting jobs and starts nothing new; a stopped machine keeps its first reason")
    func drainAndStop() {
        var (machine, _) = machine(owning: [0], concurrency: 1)
        let first = run(&machine, "a", tick: 1, at: origin(0, 0))!
        let other = run(&machine, "b", tick: 1, at: origin(0, 1))
        #expect(other == nil, "concurrency 1")
        machine.beginDrain()
        #expect(machine.lifecycle == .draining)
        #expect(machine.buffered == 1)
        let next = machine.finished(first, result: BatchFixtures.result("a"), statusRecord: nil)
        #expect(next.start.isEmpty)
        let late = machine.accept(job("c", tick: 1), origin: origin(0, 2))
        #expect(started(late).isEmpty)
        machine.stop(WorkerError.fenced("PRODUCER_FENCED"))
        machine.stop(WorkerError.transactionFailed("later"))
        #expect(machine.fatal?.isFenced == true)
        #expect(machine.lifecycle == .stopped)
    }

    @Test("a backlog coalesces into the newest tick; resync jobs always run; every job gets a run record")
    func aBacklogCoalescesIntoTheNewestTick() throws {
        var machine = WorkerStateMachine(
            concurrency: 4, batcher: TransactionBatcher(deadLetter: BatchFixtures.deadLetter),
            runs: RunRecorder(topic: "runs", workerId: "w1"), coalesce: true)
        let generation = machine.assigned([0])
        machine.restored(partition: 0, generation: generation, states: [:])
        let first = try #require(run(&machine, "a", tick: 1, at: origin(0, 0)))
        for offset in 1...4 {
            let consumed = machine.consumed(partition: 0, offset: Int64(offset))
            #expect(consumed)
            var queued = job("a", tick: offset + 1)
            if offset == 2 { queued.since = Date(timeIntervalSince1970: 1_600_000_000) }  // a resync in the backlog
            let action = machine.accept(queued, origin: origin(0, Int64(offset)))
            #expect(started(action).isEmpty, "waits for tick 1")
        }
        let (next, _) = machine.finished(first, result: BatchFixtures.result("a"), statusRecord: nil)
        // Ticks 2 and 4 are superseded by tick 5; the resync (offset 2) stays and runs first, in arrival order.
        #expect(machine.coalescedCount == 2)
        #expect(next.map(\.origin.offset) == [2])
        let (afterResync, _) = machine.finished(
            try #require(next.first), result: BatchFixtures.result("a"), statusRecord: nil)
        #expect(afterResync.map(\.job.jobId) == ["a@5"])
        _ = machine.finished(try #require(afterResync.first), result: BatchFixtures.result("a"), statusRecord: nil)
        guard case .commit(let batch) = machine.flush() else {
            Issue.record("expected a batch")
            return
        }
        let runs = batch.records.filter { $0.topic == "runs" }.compactMap {
            $0.value.flatMap { try? RunRecord.decodeMessage($0) }
        }
        #expect(runs.count == 5, "one run record per consumed job")
        #expect(runs.filter { $0.outcome == .coalesced }.compactMap(\.jobId).sorted() == ["a@2", "a@4"])
        #expect(runs.filter { $0.outcome == .succeeded }.count == 3)
    }
}
