import Foundation
import Kafka
import Logging
import Metrics
import SyncModel
import Synchronization

/// How the worker runs the jobs it accepted and commits their output: each sync in its own task, refreshed
/// credentials stored before use, the drain at shutdown, and each batch asked for, written and reported.
extension WorkerService {
    // MARK: - Running jobs

    func runJob(_ queued: QueuedJob) async {
        let state = shared.withLock { $0.machine.state(for: queued) }
        let started = ContinuousClock.now
        let startedAt = Date()
        // Its own task, so a revocation can cancel it (shutdown cancels it through this one).
        let sync = Task { () -> JobResult in
            let account = await self.accounts.lookup(
                queued.job.accountId, partition: queued.origin.partition, producedAt: queued.origin.timestamp)
            return await self.processor.process(
                queued.job, origin: queued.origin, account: account, state: state,
                saveCredentials: { credentials in try await self.saveCredentials(queued, credentials) })
        }
        let number = runningJobs.withLock { running in
            defer { running.next += 1 }
            running.tasks[running.next] = (queued.origin.partition, sync)
            return running.next
        }
        let processed = await withTaskCancellationHandler {
            await sync.value
        } onCancel: {
            sync.cancel()
        }
        _ = runningJobs.withLock { $0.tasks.removeValue(forKey: number) }
        metrics.jobDuration.recordNanoseconds((ContinuousClock.now - started).wholeNanoseconds)
        metrics.job(outcome: processed.outcome)
        if processed.outcome == .needsReauth {
            logger.warning("account needs re-authentication", metadata: ["account": "\(queued.job.accountId)"])
        }
        let statusRecord = processed.status.flatMap { processor.statusRecord($0) }
        let (next, commit, coalesced) = decide { shared in
            let before = shared.machine.coalescedCount
            let (next, commit) = shared.machine.finished(
                queued, result: processed, statusRecord: statusRecord, startedAt: startedAt)
            return (next, commit, shared.machine.coalescedCount - before)
        }
        if coalesced > 0 {
            metrics.job(outcome: .coalesced, count: coalesced)
            logger.info(
                "older ticks of an account were coalesced into its newest",
                metadata: ["account": "\(queued.job.accountId)", "coalesced": "\(coalesced)"])
        }
        handle(commit)
        if !next.isEmpty { handle(.start(next)) }
    }

    /// Stores a token pair `queued`'s sync just refreshed, before the sync uses it: as the account's state record
    /// (its committed state, `lastJob` included, with the new pair), through an idempotent producer, delivery
    /// awaited.
    ///
    /// The refresh invalidated the old pair, so a pair known only to the running job would be lost with it —
    /// cancelled by a revocation or shutdown, or the process killed — and the account would need reconnecting. The
    /// record is written only while no state record of the account waits to be committed (an earlier job's, which
    /// would otherwise land after it and put the old pair back) and while the partition is still this worker's;
    /// the job's own state record, later, carries the pair too.
    /// - Throws: when the partition was lost, an earlier state of the account is not committed within 10 s, or the
    ///   record cannot be written; the sync then stops without using the pair.
    private func saveCredentials(_ queued: QueuedJob, _ credentials: CredentialState) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        var state: StateRecord?
        while true {
            let (owned, holding, current) = shared.withLock {
                ($0.machine.owns(queued), $0.machine.holdsState(of: queued), $0.machine.state(for: queued))
            }
            guard owned else {
                throw CredentialsNotStored("partition \(queued.origin.partition) is no longer this worker's")
            }
            if !holding {
                state = current
                break
            }
            switch await wait(for: .stateCommitted(queued), deadline: deadline) {
            case .met, .released: continue
            case .timedOut: throw CredentialsNotStored("an earlier state of the account is still not committed")
            case .cancelled: throw CancellationError()
            case .stopped: throw CredentialsNotStored("the worker is stopping")
            }
        }
        guard
            let (kept, record) = processor.credentialsRecord(
                credentials, job: queued.job, partition: queued.origin.partition, state: state)
        else {
            throw CredentialsNotStored("the account's state with the new pair does not fit in a record")
        }
        let producer = try credentialsProducer.withLock { producer -> KafkaProducer in
            if let producer { return producer }
            let created = try KafkaProducer(
                configuration: ProducerConfiguration(kafka: configuration.kafka), logger: logger)
            producer = created
            return created
        }
        _ = try await producer.send([record.producerRecord])
        decide { $0.machine.credentialsStored(queued, record: kept) }
        metrics.credentialsStored.increment()
        logger.info(
            "a refreshed token pair was stored before use", metadata: ["account": "\(queued.job.accountId)"])
    }

    /// Why a refreshed pair was not stored before use (the sync then stops without using it).
    private struct CredentialsNotStored: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Waits for running jobs (up to the shutdown deadline, then cancels them by ending the run) and commits, both
    /// parked in the machine.
    func drain(reason: String) async {
        decide { $0.machine.beginDrain() }
        _ = await wait(for: .jobsEnded(nil), deadline: .now + configuration.shutdownDeadline)
        // Leaving, unlike a revocation, need not wait for a write in flight past its deadline: an open transaction is
        // aborted by the broker (or fenced by the restart), and at least once only repeats.
        act { $0.flush() }
        _ = await wait(for: .outputSettled(nil), deadline: .now + .seconds(10))
        logger.info("drained", metadata: ["reason": "\(reason)"])
    }

    // MARK: - Committing

    func handle(_ action: WorkerStateMachine.Action) {
        switch action {
        case .none: break
        case .start(let jobs):
            guard let startJob = shared.withLock({ $0.startJob }) else { return }
            for job in jobs { startJob.yield(job) }
        case .commit(let batch): _ = shared.withLock { $0.commitRequests }?.yield(batch)
        case .stop(let error): stop(error)
        }
    }

    /// Asks the machine whether `batch` may be written, writes it, and reports how that went.
    func perform(_ batch: TransactionBatcher.Batch, output: any OutputWriter) async {
        // A batch holding a partition revoked since it was built, or built in an earlier assignment, is not ours to
        // commit any more: writing its records without their offsets would make the next owner repeat them, and
        // its offsets under the new generation would move the new owner's position. Drop it; its jobs run again.
        let permit = decide { shared in
            shared.consumer.flatMap { consumer in shared.machine.groupMetadata(toWrite: batch).map { ($0, consumer) } }
        }
        guard let (metadata, consumer) = permit else {
            logger.info("batch abandoned: its partitions were revoked", metadata: ["jobs": "\(batch.jobCount)"])
            act { $0.abandon(batch) }
            return
        }
        let offsets = batch.offsets.map {
            TopicPartitionOffset(topic: configuration.topics.jobs, partition: $0.key, offset: $0.value)
        }
        let isCurrent: @Sendable () -> Bool = { [self] in self.shared.withLock { $0.machine.mayWrite(batch) } }
        if let failure = await output.write(
            batch, offsets: offsets, groupMetadata: metadata, consumer: consumer, isCurrent: isCurrent)
        {
            await failed(batch, failure)
        } else {
            committed(batch, consumer: consumer)
        }
    }

    private func committed(_ batch: TransactionBatcher.Batch, consumer: KafkaConsumer) {
        metrics.commits.increment()
        let now = Date()
        for scheduled in batch.scheduledAt {
            metrics.scheduledToCommitted.recordNanoseconds(Int64(max(0, now.timeIntervalSince(scheduled)) * 1e9))
        }
        configuration.onCommit?(
            CommitReport(
                jobCount: batch.jobCount, recordCount: batch.records.count + batch.stateRecords.count,
                committedAt: now, scheduledAt: batch.scheduledAt))
        act { $0.commitSucceeded(batch) }
        applyBackpressure(consumer)
    }

    private func failed(_ batch: TransactionBatcher.Batch, _ failure: TransactionBatcher.CommitFailure) async {
        metrics.aborts.increment()
        if shared.withLock({ $0.abandonCommits }) {
            logger.warning("commit failed during shutdown; left to the next owner", metadata: ["error": "\(failure)"])
            return
        }
        logger.warning("commit failed", metadata: ["error": "\(failure)", "attempt": "\(batch.attempt)"])
        if case .aborted(_, let rebalancing, let recordRejected) = failure {
            if recordRejected { metrics.rejectedBatches.increment() }
            if rebalancing {
                // The revocation that settles this is on its way: re-producing the batch in a tight loop meanwhile
                // would only fill the logs with aborted records.
                try? await Task.sleep(for: .milliseconds(100))
            } else if !recordRejected {
                try? await Task.sleep(for: Self.commitBackoff.delay(afterFailures: batch.attempt))
            }
        }
        let (action, deadLettered) = decide { shared in
            let before = shared.machine.deadLetteredOutputs
            let action = shared.machine.commitFailed(batch, failure: failure)
            return (action, shared.machine.deadLetteredOutputs - before)
        }
        if deadLettered > 0 {
            metrics.job(outcome: .deadLettered)
            logger.error(
                "the cluster refused a job's output; the job goes to the dead-letter topic instead",
                metadata: ["error": "\(failure)", "jobs": "\(deadLettered)"])
        }
        handle(action)
    }

    func reportLag() async {
        while !Task.isCancelled, !shared.withLock({ $0.stopping }) {
            try? await Task.sleep(for: .seconds(5))
            guard let consumer = shared.withLock({ $0.consumer }) else { continue }
            for partition in shared.withLock({ $0.machine.assignedPartitions }) {
                guard
                    let (_, high) = try? await consumer.watermarks(
                        topic: configuration.topics.jobs, partition: partition, timeout: .seconds(2)),
                    let position = shared.withLock({ $0.machine.committedPosition(partition: partition) })
                else { continue }
                metrics.lag(partition: partition, Int(max(0, high - position)))
            }
        }
    }
}
