import Foundation
import Kafka
import SyncModel
import Testing

@testable import Worker

/// How the worker answers a failed transactional write, from librdkafka's code and flags: what a user sees is
/// whether the worker keeps running, and when it stops, which reason (and exit code) it gives.
@Suite struct CommitFailureTests {
    /// librdkafka's `rd_kafka_resp_err_t` values.
    static let fencedInstanceId: Int32 = 82
    static let illegalGeneration: Int32 = 22
    static let unknownMemberId: Int32 = 25
    static let producerFenced: Int32 = 90
    static let invalidProducerEpoch: Int32 = 47
    static let invalidTxnState: Int32 = 48

    func failure(
        _ code: Int32, requiresAbort: Bool = false, isFatal: Bool = false,
        openFor: (elapsed: Duration, timeout: Duration)? = nil
    ) -> TransactionBatcher.CommitFailure {
        let error = KafkaError.transaction(
            librdkafkaCode: code, message: "sendOffsetsToTransaction: Failed to commit offsets to transaction",
            requiresAbort: requiresAbort, isFatal: isFatal)
        return .from(error, context: "writing batch 74", openFor: openFor)
    }

    @Test(
        "an abortable FENCED_INSTANCE_ID, ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID on the offset commit aborts the batch; the worker goes on",
        arguments: [fencedInstanceId, illegalGeneration, unknownMemberId])
    func abortableStaleMembershipAborts(code: Int32) {
        guard case .aborted(_, let rebalancing, let recordRejected) = failure(code, requiresAbort: true) else {
            Issue.record("an abortable \(code) must not stop the worker")
            return
        }
        #expect(rebalancing, "settled by the loss or revocation that follows, not counted toward giving up")
        #expect(!recordRejected)
    }

    @Test("a fatal FENCED_INSTANCE_ID or PRODUCER_FENCED is another process with this --id: exit 3")
    func fatalFencingStops() {
        for code in [Self.fencedInstanceId, Self.producerFenced, Self.invalidProducerEpoch] {
            guard case .fatal(let error) = failure(code, isFatal: true) else {
                Issue.record("a fatal \(code) must stop the worker")
                continue
            }
            #expect(error.isFenced)
            #expect(error.exitCode == 3)
            #expect("\(error)".contains("Another process with the same --id took over"))
        }
    }

    @Test("a fatal error that is not fencing stops with exit 1, not the fencing message")
    func fatalNotFencing() {
        guard case .fatal(let error) = failure(Self.invalidTxnState, isFatal: true) else {
            Issue.record("expected fatal")
            return
        }
        #expect(!error.isFenced)
        #expect(error.exitCode == 1)
    }

    @Test(
        "a rejected epoch after the transaction outlived transaction.timeout.ms is the broker's timeout, not another worker",
        arguments: [producerFenced, invalidProducerEpoch, invalidTxnState])
    func brownoutIsReportedAsATimedOutTransaction(code: Int32) {
        guard case .fatal(let error) = failure(code, isFatal: true, openFor: (.seconds(31), .seconds(30))) else {
            Issue.record("expected fatal")
            return
        }
        #expect(!error.isFenced, "\(error)")
        #expect(error.exitCode == 1)
        #expect("\(error)".contains("transaction.timeout.ms"))
        #expect(!"\(error)".contains("took over"))
        // The same error within the timeout: the broker had no reason to abort, so another producer took over.
        guard case .fatal(let early) = failure(code, isFatal: true, openFor: (.seconds(2), .seconds(30))) else {
            Issue.record("expected fatal")
            return
        }
        #expect(early.isFenced == (code != Self.invalidTxnState))
    }

    /// The issue's scenario: a batch built under the old membership is being written when the broker restarts; the
    /// session times out (its partitions are lost), the consumer rejoins under its group.instance.id, and the
    /// offset commit comes back FENCED_INSTANCE_ID, abortable. The batch is dropped; the worker keeps running and
    /// commits the next assignment's jobs.
    @Test("a batch whose partitions were lost while it was written is dropped after an abortable FENCED_INSTANCE_ID")
    func lostPartitionsThenStaleCommitKeepsTheWorkerRunning() throws {
        var machine = WorkerStateMachine(concurrency: 4, batcher: TransactionBatcher())
        let generation = machine.assigned([0, 1])
        for partition: Int32 in [0, 1] { machine.restored(partition: partition, generation: generation, states: [:]) }
        let origin = JobOrigin(topic: "jobs", partition: 0, offset: 0, key: nil, value: nil)
        let consumed = machine.consumed(partition: 0, offset: 0)
        #expect(consumed)
        let job = SyncJob(
            accountId: "a", integration: "github", scheduledAt: Date(timeIntervalSince1970: 1_700_000_000), jobId: "a@1"
        )
        guard case .start(let started) = machine.accept(job, origin: origin), let queued = started.first else {
            Issue.record("the job should start")
            return
        }
        _ = machine.finished(queued, result: BatchFixtures.result("a"), statusRecord: nil)
        guard case .commit(let batch) = machine.flush() else {
            Issue.record("expected a batch")
            return
        }
        // The session timed out while the broker was away.
        _ = machine.beginRevocation([0, 1], lost: true)
        #expect(!machine.mayWrite(batch), "the loss cancels the batch before its offsets go out")
        let next = machine.commitFailed(batch, failure: failure(Self.fencedInstanceId, requiresAbort: true))
        if case .stop(let error) = next { Issue.record("the worker stopped: \(error)") }
        if case .commit = next { Issue.record("a batch of lost partitions was sent again") }
        #expect(machine.lifecycle == .running)
        #expect(machine.fatal == nil)
        // The rejoin hands the partitions back: the job is consumed again and committed in the new assignment.
        let regained = machine.assigned([0, 1])
        for partition: Int32 in [0, 1] { machine.restored(partition: partition, generation: regained, states: [:]) }
        let consumedAgain = machine.consumed(partition: 0, offset: 0)
        #expect(consumedAgain, "the job is consumed again from the committed offset")
        guard case .start(let again) = machine.accept(job, origin: origin), let rerun = again.first else {
            Issue.record("the job should run again in the new assignment")
            return
        }
        _ = machine.finished(rerun, result: BatchFixtures.result("a"), statusRecord: nil)
        guard case .commit(let retry) = machine.flush() else {
            Issue.record("expected the new assignment's batch")
            return
        }
        #expect(retry.generation == regained)
        #expect(machine.mayWrite(retry))
    }
}
