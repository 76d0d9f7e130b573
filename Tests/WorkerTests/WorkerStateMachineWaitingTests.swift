import Foundation
import SyncModel
import Testing

@testable import Kafka
@testable import Worker

/// The worker's waits as the machine keeps them: a task parks under an id, and the event that settles what it waits
/// for is what resumes it. Driven event by event, with no clock: deadlines and cancellations are events too.
@Suite struct WorkerStateMachineWaitingTests {
    let fixtures = WorkerStateMachineTests()

    func origin(_ partition: Int32, _ offset: Int64) -> JobOrigin { fixtures.origin(partition, offset) }

    /// A machine owning `partitions` whose batches are built only when asked (flushed), never by the clock.
    func makeMachine(owning partitions: [Int32]) -> WorkerStateMachine {
        var configuration = TransactionBatcher.Configuration()
        configuration.commitInterval = .seconds(3600)
        let batcher = TransactionBatcher(configuration: configuration, deadLetter: BatchFixtures.deadLetter)
        var machine = WorkerStateMachine(concurrency: 8, batcher: batcher)
        let generation = machine.assigned(partitions)
        for partition in partitions { machine.restored(partition: partition, generation: generation, states: [:]) }
        return machine
    }

    func run(_ machine: inout WorkerStateMachine, _ account: String, tick: Int = 1, at origin: JobOrigin)
        -> WorkerStateMachine.QueuedJob?
    {
        fixtures.run(&machine, account, tick: tick, at: origin)
    }

    func resumed(_ wakeups: WorkerStateMachine.Wakeups) -> [WorkerStateMachine.WaiterID: WorkerStateMachine.Wakeup] {
        Dictionary(uniqueKeysWithValues: wakeups.resume.map { ($0.id, $0.wakeup) })
    }

    func batch(_ action: WorkerStateMachine.Action) -> TransactionBatcher.Batch? {
        if case .commit(let batch) = action { return batch }
        return nil
    }

    @Test("a revocation's wait for its running jobs ends with the last of them, not with another partition's")
    func waitingForJobsEndsWithTheLastOne() throws {
        var machine = makeMachine(owning: [0, 1])
        let revoked = try #require(run(&machine, "a", at: origin(0, 0)))
        let other = try #require(run(&machine, "b", at: origin(1, 0)))
        _ = machine.beginRevocation([0], lost: false)
        machine.park(1, until: .jobsEnded([0]))
        #expect(machine.wakeups().resume.isEmpty, "a job of partition 0 still runs")
        _ = machine.finished(other, result: BatchFixtures.result("b"), statusRecord: nil)
        #expect(machine.wakeups().resume.isEmpty, "partition 1's job is not the one waited for")
        _ = machine.finished(revoked, result: BatchFixtures.result("a"), statusRecord: nil)
        #expect(resumed(machine.wakeups()) == [1: .met])
        #expect(machine.wakeups().resume.isEmpty, "resumed once")
    }

    @Test("a revoked partition is settled only when the batch holding it commits; the wait flushes its output")
    func settlingFlushesAndEndsWithTheCommit() throws {
        var machine = makeMachine(owning: [0])
        let queued = try #require(run(&machine, "a", at: origin(0, 0)))
        _ = machine.finished(queued, result: BatchFixtures.result("a"), statusRecord: nil)
        _ = machine.beginRevocation([0], lost: false)
        machine.park(1, until: .outputSettled([0]))
        let first = machine.wakeups()
        #expect(first.resume.isEmpty)
        let flushed = try #require(batch(first.action), "the finished output is put in a batch for the waiter")
        #expect(flushed.offsets == [0: 1])
        let meanwhile = machine.wakeups()
        #expect(meanwhile.resume.isEmpty, "never handed over while the batch holding it is being written")
        #expect(batch(meanwhile.action) == nil, "one transaction at a time")
        _ = machine.commitSucceeded(flushed)
        #expect(resumed(machine.wakeups()) == [1: .met])
    }

    @Test("a cancelled revocation still waits for the write in flight; then it is released with what is left")
    func cancellationDoesNotEndTheWaitForAWrite() throws {
        var machine = makeMachine(owning: [0])
        let first = try #require(run(&machine, "a", at: origin(0, 0)))
        let second = try #require(run(&machine, "b", at: origin(0, 1)))
        _ = machine.finished(first, result: BatchFixtures.result("a"), statusRecord: nil)
        let writing = try #require(batch(machine.flush()))
        _ = machine.beginRevocation([0], lost: false)
        machine.park(1, until: .outputSettled([0]))
        machine.cancel(1)
        #expect(machine.wakeups().resume.isEmpty, "the batch holding partition 0 is still being written")
        _ = machine.finished(second, result: BatchFixtures.result("b"), statusRecord: nil)
        _ = machine.commitSucceeded(writing)
        let after = machine.wakeups()
        #expect(resumed(after) == [1: .released], "b's output is left to the next owner: no new batch is started")
        #expect(batch(after.action) == nil)
    }

    @Test("past its first deadline a revocation stops flushing; its last deadline ends even the wait for a write")
    func deadlinesEndTheSettling() throws {
        var machine = makeMachine(owning: [0])
        let first = try #require(run(&machine, "a", at: origin(0, 0)))
        _ = machine.finished(first, result: BatchFixtures.result("a"), statusRecord: nil)
        _ = try #require(batch(machine.flush()))
        _ = machine.beginRevocation([0], lost: false)
        machine.park(1, until: .outputSettled([0]), flushing: false)
        #expect(machine.wakeups().resume.isEmpty, "a write in flight is waited for past the first deadline")
        machine.expire(1)
        #expect(resumed(machine.wakeups()) == [1: .timedOut])
    }

    @Test("a full buffer holds the consumer until a job finishes; cancelling its task resumes it at once")
    func roomInTheBuffer() throws {
        var machine = makeMachine(owning: [0])
        let first = try #require(run(&machine, "a", at: origin(0, 0)))
        _ = try #require(run(&machine, "b", at: origin(0, 1)))
        machine.park(1, until: .room(limit: 2))
        #expect(machine.wakeups().resume.isEmpty, "two jobs buffered, two allowed")
        _ = machine.finished(first, result: BatchFixtures.result("a"), statusRecord: nil)
        #expect(resumed(machine.wakeups()) == [1: .met])
        machine.park(2, until: .room(limit: 1))
        #expect(machine.wakeups().resume.isEmpty)
        machine.cancel(2)
        #expect(resumed(machine.wakeups()) == [2: .cancelled])
        machine.park(3, until: .room(limit: 1))
        machine.beginDrain()
        #expect(resumed(machine.wakeups()) == [3: .met], "a draining worker takes no more jobs: nothing to hold back")
    }

    @Test("a refreshed pair waits until the account's earlier state is committed, or its partition is gone")
    func aRefreshWaitsForTheEarlierState() throws {
        var machine = makeMachine(owning: [0])
        let first = try #require(run(&machine, "a", tick: 1, at: origin(0, 0)))
        var result = BatchFixtures.result("a")
        result.newState = StateRecord(
            accountId: "a", integration: "github", lastJob: JobMarker(jobId: "a@1", scheduledAt: Date()),
            updatedAt: Date(), data: [:], credentials: nil)
        _ = machine.finished(first, result: result, statusRecord: nil)
        let writing = try #require(batch(machine.flush()))
        let second = try #require(run(&machine, "a", tick: 2, at: origin(0, 1)))
        #expect(machine.holdsState(of: second))
        machine.park(1, until: .stateCommitted(second))
        #expect(machine.wakeups().resume.isEmpty)
        _ = machine.commitSucceeded(writing)
        #expect(resumed(machine.wakeups()) == [1: .met])
        // Its partition lost: nothing to wait for either (the service then finds it no longer owned).
        machine.park(2, until: .stateCommitted(second))
        _ = machine.beginRevocation([0], lost: true)
        #expect(resumed(machine.wakeups()) == [2: .met])
    }

    @Test("a worker that stops resumes every parked task: nothing it waits for will come")
    func stoppingResumesEveryone() throws {
        var machine = makeMachine(owning: [0])
        let first = try #require(run(&machine, "a", tick: 1, at: origin(0, 0)))
        _ = machine.finished(first, result: BatchFixtures.result("a"), statusRecord: nil)
        let writing = try #require(batch(machine.flush()))
        // The account's next job runs, holding a refreshed pair until the first job's state is committed.
        let second = try #require(run(&machine, "a", tick: 2, at: origin(0, 1)))
        machine.park(1, until: .outputSettled(nil))
        machine.park(2, until: .jobsEnded(nil))
        machine.park(3, until: .room(limit: 1))
        machine.park(4, until: .stateCommitted(second))
        #expect(machine.wakeups().resume.isEmpty)
        // The producer was fenced while writing: the batch leaves nothing in flight, and the worker stops.
        guard case .stop = machine.commitFailed(writing, failure: .fatal(WorkerError.fenced("PRODUCER_FENCED"))) else {
            Issue.record("a fenced producer stops the worker")
            return
        }
        #expect(resumed(machine.wakeups()) == [1: .stopped, 2: .stopped, 3: .stopped, 4: .stopped])
    }

    @Test("a batch is written only with the group metadata of the assignment it was built in")
    func aBatchCarriesItsAssignmentsMetadata() throws {
        var machine = WorkerStateMachine(concurrency: 4, batcher: TransactionBatcher())
        let old = ConsumerGroupMetadata(serialized: [1])
        let generation = machine.assigned([0], groupMetadata: old)
        machine.restored(partition: 0, generation: generation, states: [:])
        let queued = try #require(run(&machine, "a", at: origin(0, 0)))
        _ = machine.finished(queued, result: BatchFixtures.result("a"), statusRecord: nil)
        let built = try #require(batch(machine.flush()))
        #expect(machine.groupMetadata(toWrite: built) == old)
        // A new assignment of the same partition, its revocation never seen (a lost event).
        _ = machine.assigned([0], groupMetadata: ConsumerGroupMetadata(serialized: [2]))
        #expect(machine.groupMetadata(toWrite: built) == nil, "its offsets would move the new owner's position")
        #expect(!machine.mayWrite(built))
    }
}
