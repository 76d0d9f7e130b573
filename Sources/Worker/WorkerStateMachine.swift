import Foundation
import Kafka
import SyncModel

/// Everything a worker decides, in one place: its lifecycle, which partitions it owns and in which assignment,
/// the jobs waiting and running per account, the restored states, and the output waiting to be committed.
///
/// Pure and I/O-free, in the style of async-http-client's `*+StateMachine.swift`: ``WorkerService`` keeps one
/// instance behind one lock, reports what happened (an assignment, a finished job, a commit that failed) and
/// performs the ``Action`` it gets back. Keeping it in one value is what makes the hand-over rules checkable:
/// a partition is released only when no batch holding it is in flight, a batch carries the assignment it was
/// built in, and a job's output counts only if its partition is still owned in the assignment it started in.
///
/// Waiting lives here too: a task that waits for jobs to end, for output to settle, for room in the buffer or for a
/// state to be committed is parked under a ``WaiterID`` with its ``Condition``, and after every event the service
/// asks ``wakeups()`` whom that event settled (see "Waiting" below).
struct WorkerStateMachine: Sendable {
    /// A job waiting for its account's turn, with the assignment it was consumed in.
    struct QueuedJob: Sendable {
        var job: SyncJob
        var origin: JobOrigin
        var generation: Int
        /// When it was consumed: a coalesced job's run record starts and ends there.
        var consumedAt = Date()
    }

    enum Lifecycle: Sendable, Equatable {
        /// Consuming and running jobs.
        case running
        /// Shutting down: no new jobs start; running ones finish and are committed.
        case draining
        /// Stopped for good (fenced, fatal, or drained).
        case stopped
    }

    enum Ownership: Sendable, Equatable {
        /// Assigned; its state is being read. The service asks for no event until the restore finished, so no
        /// message of the partition reaches ``accept(_:origin:)`` meanwhile.
        case restoring
        /// Assigned and restored: its jobs run.
        case owned
        /// Being handed over: running jobs finish and their output is committed, nothing new starts.
        case revoking
    }

    struct Partition: Sendable {
        var generation: Int
        var ownership: Ownership
        var running = 0
    }

    /// What the caller does next.
    enum Action: Sendable {
        case none
        /// Start these jobs (each of a different account).
        case start([QueuedJob])
        /// Write this batch (records and offsets in one transaction), with the group metadata of the assignment
        /// it was built in.
        case commit(TransactionBatcher.Batch)
        /// Stop the worker.
        case stop(WorkerError)
    }

    private(set) var lifecycle: Lifecycle = .running
    private var partitions: [Int32: Partition] = [:]
    /// The current assignment's generation: counted by the batcher, which stamps each batch with it.
    private var generation: Int { batcher.generation }
    /// The group metadata the consumer took with the current assignment: a batch is written with it only while it
    /// is of that assignment (``groupMetadata(toWrite:)``).
    private var groupMetadata: ConsumerGroupMetadata?
    private var queues: AccountQueues<QueuedJob>
    private var store = StateStore()
    private var batcher: TransactionBatcher
    /// Jobs consumed and not yet finished (waiting or running), to bound memory.
    private(set) var buffered = 0
    /// Partitions whose consumption is paused because what they hold until their next commit reached a limit.
    private(set) var paused: Set<Int32> = []
    private(set) var fatal: WorkerError?
    /// Builds each consumed job's run record; nil writes none.
    private let runs: RunRecorder?
    /// Whether an account's older waiting ticks are committed as coalesced when a newer one waits too.
    private let coalesce: Bool
    /// Jobs committed as coalesced so far.
    private(set) var coalescedCount = 0
    /// The parked tasks, by the id the service keeps their continuations under.
    private var waiters: [WaiterID: Waiter] = [:]

    /// - Parameters:
    ///   - integrationLimits: jobs of an integration that may run at once (an SDK CLI's `concurrency`); the rest
    ///     wait in the queue without holding one of the `concurrency` slots.
    ///   - runs: builds the run record each consumed job commits with; nil writes none.
    ///   - coalesce: when an account's job finishes and several of its ticks wait, only the newest runs; the older
    ///     ones are committed as `coalesced` (a backlog after an outage costs one sync, not one per tick). Resync
    ///     jobs always run.
    init(
        concurrency: Int, integrationLimits: [String: Int] = [:], batcher: TransactionBatcher,
        runs: RunRecorder? = nil, coalesce: Bool = false
    ) {
        self.queues = AccountQueues(concurrency: max(1, concurrency), laneLimits: integrationLimits)
        self.batcher = batcher
        self.runs = runs
        self.coalesce = coalesce
    }

    // MARK: - Assignment

    /// New partitions: they restore first. Returns the assignment's generation.
    ///
    /// - Parameter groupMetadata: what the consumer took with this assignment; its batches are written with it.
    mutating func assigned(_ assigned: [Int32], groupMetadata: ConsumerGroupMetadata? = nil) -> Int {
        let generation = generation + 1
        for partition in assigned { partitions[partition] = Partition(generation: generation, ownership: .restoring) }
        batcher.assign(assigned, generation: generation)
        self.groupMetadata = groupMetadata
        return generation
    }

    /// A partition's state was read to the end: its jobs may run.
    ///
    /// - Returns: the number of state values that could not be decoded.
    mutating func restored(partition: Int32, generation: Int, states: [String: StateRecord]) {
        guard var entry = partitions[partition], entry.generation == generation, entry.ownership == .restoring else {
            return
        }
        store.restore(partition: partition, states: states)
        entry.ownership = .owned
        partitions[partition] = entry
    }

    var ownedPartitions: [Int32] { partitions.filter { $0.value.ownership == .owned }.keys.sorted() }
    var assignedCount: Int { partitions.count }
    func ownership(_ partition: Int32) -> Ownership? { partitions[partition]?.ownership }

    /// Starts handing partitions over: waiting jobs of them are dropped (the next owner re-consumes them from
    /// the committed offset). A lost partition is already someone else's: its running jobs stop counting at once
    /// and nothing of it may be committed. Returns how many waiting jobs were dropped.
    mutating func beginRevocation(_ revoked: [Int32], lost: Bool) -> Int {
        let set = Set(revoked)
        let removed = queues.removeWaiting { set.contains($0.origin.partition) }
        buffered -= removed.count
        if lost {
            finishRevocation(revoked)
        } else {
            for partition in revoked { partitions[partition]?.ownership = .revoking }
        }
        return removed.count
    }

    /// Whether jobs of these partitions are still running.
    func isRunning(_ revoked: [Int32]) -> Bool {
        revoked.contains { (partitions[$0]?.running ?? 0) > 0 }
    }

    /// Whether output of these partitions is waiting to be committed, or in a batch being written.
    func hasCommittable(_ revoked: [Int32]) -> Bool { batcher.hasCommittable(partitions: revoked) }

    /// Whether a batch holding one of these partitions is being written right now. A partition is never handed
    /// over while this is true: the new owner would restore state and offsets that this transaction may still
    /// change.
    func isWriting(_ revoked: [Int32]) -> Bool { batcher.inFlightHolds(partitions: revoked) }

    /// The hand-over: the partitions' states and uncommitted output are forgotten; a job of them still running
    /// (past the revocation deadline) finishes into nothing. A batch in flight that holds them is abandoned when
    /// it returns.
    mutating func finishRevocation(_ revoked: [Int32]) {
        for partition in revoked {
            partitions[partition] = nil
            paused.remove(partition)
        }
        batcher.revoke(revoked)
        store.drop(revoked)
    }

    // MARK: - Jobs

    /// Records a consumed message; false means drop it (redelivered, or its partition is not ours).
    mutating func consumed(partition: Int32, offset: Int64) -> Bool {
        guard let entry = partitions[partition], entry.ownership != .revoking else { return false }
        return batcher.consumed(partition: partition, offset: offset)
    }

    /// A decoded job: queued behind its account's running job, or started now.
    mutating func accept(_ job: SyncJob, origin: JobOrigin) -> Action {
        guard lifecycle == .running, let entry = partitions[origin.partition], entry.ownership != .revoking else {
            return .none
        }
        buffered += 1
        let queued = QueuedJob(job: job, origin: origin, generation: entry.generation)
        guard let start = queues.enqueue(queued, account: job.accountId, lane: job.integration) else { return .none }
        partitions[origin.partition]?.running += 1
        return .start([start])
    }

    /// A job that is poison: its dead letter (and run record) is its output.
    /// - Parameter job: the job, when its bytes decoded (a misplaced job, say).
    mutating func poison(origin: JobOrigin, result: JobResult, job: SyncJob? = nil, now: Date = Date()) -> Action {
        var result = result
        appendRun(to: &result, job: job, origin: origin, startedAt: now, now: now)
        return action(
            batcher.finished(partition: origin.partition, offset: origin.offset, result: result, origin: origin))
    }

    /// Adds the job's run record to its output.
    private func appendRun(
        to result: inout JobResult, job: SyncJob?, origin: JobOrigin, startedAt: Date, now: Date,
        reason: String? = nil
    ) {
        guard let runs else { return }
        let (outcome, why) = RunRecorder.outcome(of: result)
        if let record = runs.record(
            job: job, origin: origin, outcome: outcome, reason: reason ?? why, activities: result.activityCount,
            startedAt: startedAt, finishedAt: now)
        {
            result.records.append(record)
        }
    }

    /// The state a job starts from.
    func state(for queued: QueuedJob) -> StateRecord? {
        store.state(partition: queued.origin.partition, accountId: queued.job.accountId)
    }

    /// A job finished. Its output counts only if its partition is still owned in the assignment it started in.
    ///
    /// - Parameter statusRecord: the record to write if the account's status changed (the caller builds it; the
    ///   machine decides whether it is written).
    /// - Returns: the jobs that may start now and what to commit.
    /// - Parameter startedAt: when the job started running (for its run record).
    mutating func finished(
        _ queued: QueuedJob, result: JobResult, statusRecord: OutgoingRecord?, startedAt: Date? = nil,
        now: Date = Date()
    ) -> (start: [QueuedJob], commit: Action) {
        let partition = queued.origin.partition
        let current = partitions[partition]?.generation == queued.generation
        buffered -= 1
        var commit = Action.none
        if current {
            partitions[partition]?.running -= 1
            var result = result
            let before = TransactionBatcher.StateBefore(
                accountId: queued.job.accountId,
                state: store.state(partition: partition, accountId: queued.job.accountId), after: result.newState)
            if let newState = result.newState { store.update(partition: partition, newState) }
            if let status = result.status, let statusRecord,
                store.statusChanged(accountId: status.accountId, to: status.status)
            {
                result.records.append(statusRecord)
            }
            appendRun(
                to: &result, job: queued.job, origin: queued.origin, startedAt: startedAt ?? queued.consumedAt,
                now: now)
            commit = action(
                batcher.finished(
                    partition: partition, offset: queued.origin.offset, result: result, origin: queued.origin,
                    before: before, now: now))
        }
        if coalesce {
            let superseded = coalesceWaiting(of: queued.job.accountId, now: now)
            if case .none = commit { commit = superseded }
        }
        let next = queues.finished(account: queued.job.accountId).map(\.item)
        for job in next { partitions[job.origin.partition]?.running += 1 }
        return (next, commit)
    }

    /// Whether `queued`'s partition is still owned in the assignment the job started in.
    func owns(_ queued: QueuedJob) -> Bool {
        partitions[queued.origin.partition].map { $0.generation == queued.generation && $0.ownership == .owned }
            ?? false
    }

    /// Whether a state record of the running job's account waits to be committed (or is being written).
    func holdsState(of queued: QueuedJob) -> Bool {
        batcher.holdsState(of: queued.job.accountId, partition: queued.origin.partition)
    }

    /// A token pair the running job refreshed was stored (in `record`, the account's state with it): later jobs of
    /// the account start from it, whether or not this job's own output is ever written.
    mutating func credentialsStored(_ queued: QueuedJob, record: StateRecord) {
        guard owns(queued) else { return }
        store.update(partition: queued.origin.partition, record)
    }

    /// Commits the account's waiting ticks but the newest as `coalesced` (they would re-read what the newest
    /// reads anyway); resync jobs stay, in their order.
    private mutating func coalesceWaiting(of accountId: String, now: Date) -> Action {
        let ticks = queues.waiting(of: accountId).filter { $0.job.since == nil }
        guard ticks.count > 1,
            let newest = ticks.max(by: {
                ($0.job.scheduledAt, $0.origin.offset) < ($1.job.scheduledAt, $1.origin.offset)
            })
        else { return .none }
        let superseded = queues.removeWaiting(of: accountId) {
            $0.job.since == nil
                && !($0.origin.partition == newest.origin.partition && $0.origin.offset == newest.origin.offset)
        }
        var commit = Action.none
        for queued in superseded {
            buffered -= 1
            guard partitions[queued.origin.partition]?.generation == queued.generation else { continue }
            coalescedCount += 1
            var result = JobResult(outcome: .coalesced)
            appendRun(
                to: &result, job: queued.job, origin: queued.origin, startedAt: queued.consumedAt, now: now,
                reason: "superseded by the newer job \(newest.job.jobId), which ran instead")
            let next = action(
                batcher.finished(
                    partition: queued.origin.partition, offset: queued.origin.offset, result: result,
                    origin: queued.origin, now: now))
            if case .none = commit { commit = next }
        }
        return commit
    }

    // MARK: - Committing

    mutating func tick(now: Date = Date()) -> Action { action(batcher.tick(now: now)) }

    mutating func flush() -> Action { action(batcher.flush()) }

    /// Whether this batch may be written now: in flight, of the current assignment, none of its partitions
    /// handed over.
    func mayWrite(_ batch: TransactionBatcher.Batch) -> Bool {
        batcher.isValid(batchId: batch.id) && batch.generation == generation
            && batch.offsets.keys.allSatisfy { partitions[$0] != nil }
    }

    /// The group metadata to write `batch` with, if it may be written (``mayWrite(_:)``): that of the assignment it
    /// was built in, never a later one's.
    func groupMetadata(toWrite batch: TransactionBatcher.Batch) -> ConsumerGroupMetadata? {
        mayWrite(batch) ? groupMetadata : nil
    }

    mutating func abandon(_ batch: TransactionBatcher.Batch) -> Action {
        action(batcher.abandon(batchId: batch.id))
    }

    mutating func commitSucceeded(_ batch: TransactionBatcher.Batch, now: Date = Date()) -> Action {
        action(batcher.commitSucceeded(batchId: batch.id, now: now))
    }

    /// A write failed. While a partition of the batch is being handed over, an abort is final for it: the
    /// group is moving to a new generation, so retrying could only commit behind the next owner's back.
    ///
    /// That rule is for a batch of the current assignment. A batch of an earlier one (still being written when the
    /// partitions were lost and came back, say after a broker outage longer than the session) holds none of the
    /// current assignment's jobs: it is dropped alone, and what this assignment finished is still committed before
    /// the hand-over. Dropping that too would make the next owner run those jobs again, and a GitHub thread version
    /// they were handed may be gone by then.
    mutating func commitFailed(
        _ batch: TransactionBatcher.Batch, failure: TransactionBatcher.CommitFailure, now: Date = Date()
    ) -> Action {
        if case .aborted = failure, batch.generation == generation,
            batch.offsets.keys.contains(where: { partitions[$0]?.ownership == .revoking || partitions[$0] == nil })
        {
            batcher.discard(batch.offsets.keys.filter { partitions[$0]?.ownership != .owned })
            return action(batcher.abandon(batchId: batch.id, now: now))
        }
        let next = action(batcher.commitFailed(batchId: batch.id, failure: failure, now: now))
        // A job whose output became a dead letter did not change its account's state: later jobs of the account
        // start from the state before it, so they read again what it could not write. Unless a later job already
        // ran on its state: that job's output commits (it carries its own state), and going back under it would
        // make the next job emit that output again; the refused job's own items are then only in its dead letter.
        for (partition, before) in batcher.takeStatesToRestore()
        where store.state(partition: partition, accountId: before.accountId) == before.after {
            store.restore(partition: partition, accountId: before.accountId, to: before.state)
        }
        return next
    }

    var counts: (commits: Int, aborts: Int) { batcher.counts }

    /// Per-partition backpressure: a partition whose uncommitted jobs or output bytes reached a limit is paused,
    /// and resumed once both are below half of it. A slow job at a partition's head holds back every later job's
    /// output there (offsets commit in order); this bounds that partition alone, while the others go on.
    ///
    /// - Returns: the partitions to pause and to resume now (each reported once).
    mutating func backpressure(maxJobs: Int, maxBytes: Int) -> (pause: [Int32], resume: [Int32]) {
        var pause: [Int32] = []
        var resume: [Int32] = []
        for (partition, entry) in partitions where entry.ownership != .restoring {
            let held = batcher.uncommitted(partition: partition)
            if paused.contains(partition) {
                if held.jobs < maxJobs / 2, held.bytes < maxBytes / 2 {
                    paused.remove(partition)
                    resume.append(partition)
                }
            } else if held.jobs >= maxJobs || held.bytes >= maxBytes {
                paused.insert(partition)
                pause.append(partition)
            }
        }
        return (pause.sorted(), resume.sorted())
    }
    var deadLetteredOutputs: Int { batcher.deadLettered }
    var assignedPartitions: [Int32] { partitions.keys.sorted() }
    func committedPosition(partition: Int32) -> Int64? { batcher.committedPosition(partition: partition) }

    // MARK: - Lifecycle

    /// Stop taking jobs: waiting ones are dropped (re-consumed by the next owner), running ones finish.
    mutating func beginDrain() {
        guard lifecycle == .running else { return }
        lifecycle = .draining
        let removed = queues.removeWaiting { _ in true }
        buffered -= removed.count
    }

    var isRunningAnything: Bool { partitions.values.contains { $0.running > 0 } }

    /// The worker cannot go on; the first reason wins.
    mutating func stop(_ error: WorkerError?) {
        if fatal == nil { fatal = error }
        lifecycle = .stopped
        let removed = queues.removeWaiting { _ in true }
        buffered -= removed.count
    }

    // MARK: - Waiting

    /// A parked task: the service keeps its continuation under this id, the machine what it waits for.
    typealias WaiterID = UInt64

    /// What a parked task waits for.
    enum Condition: Sendable {
        /// No job of these partitions (nil: of any partition) is running.
        case jobsEnded(Set<Int32>?)
        /// No output of these partitions (nil: of every assigned one) waits to be committed or is being written.
        /// While the waiter flushes, such output that is not being written goes into a batch at once; once it no
        /// longer does (its first deadline passed, or its task was cancelled), it is released as soon as nothing of
        /// them is being written — never while a batch holding them is, which only its last deadline ends.
        case outputSettled(Set<Int32>?)
        /// Fewer than `limit` jobs are buffered, or the worker takes no more.
        case room(limit: Int)
        /// No state record of the running job's account waits to be committed, or its partition is no longer the
        /// job's.
        case stateCommitted(QueuedJob)
    }

    /// Why a parked task was resumed.
    enum Wakeup: Sendable, Equatable {
        /// What it waited for holds.
        case met
        /// Output still waits, but none of it is being written and the waiter stopped flushing: a revocation hands
        /// the partitions over with that output left to the next owner.
        case released
        /// Its deadline passed first.
        case timedOut
        /// Its task was cancelled.
        case cancelled
        /// The worker stopped: nothing it waited for will come.
        case stopped
    }

    private struct Waiter: Sendable {
        var condition: Condition
        var flushing: Bool
        /// Set by a deadline or a cancellation: resumed with this at the next ``wakeups()``.
        var forced: Wakeup?
    }

    /// What the service does after an event: resume these parked tasks, and perform `action` (a batch flushed for
    /// a waiter, or a stop).
    struct Wakeups: Sendable {
        var resume: [(id: WaiterID, wakeup: Wakeup)] = []
        var action: Action = .none
    }

    /// Parks a task until `condition` holds. The next ``wakeups()`` (the service asks in the same lock) resumes it
    /// at once if it holds already.
    /// - Parameter flushing: for ``Condition/outputSettled(_:)``: whether to flush its output while nothing of it is
    ///   being written.
    mutating func park(_ id: WaiterID, until condition: Condition, flushing: Bool = true) {
        waiters[id] = Waiter(condition: condition, flushing: flushing)
    }

    /// The waiter's deadline passed: it is resumed `.timedOut`.
    mutating func expire(_ id: WaiterID) {
        waiters[id]?.forced = .timedOut
    }

    /// A settling waiter's first deadline passed: no more flushing; released once nothing of it is being written.
    mutating func stopFlushing(_ id: WaiterID) {
        waiters[id]?.flushing = false
    }

    /// The waiter's task was cancelled: it is resumed `.cancelled` — except a wait for settled output, which only
    /// stops flushing: a partition is never handed over while a batch holding it is being written, so that part of
    /// the wait ends only with the write or its last deadline.
    mutating func cancel(_ id: WaiterID) {
        guard let waiter = waiters[id] else { return }
        if case .outputSettled = waiter.condition {
            waiters[id]?.flushing = false
        } else {
            waiters[id]?.forced = .cancelled
        }
    }

    /// Whom the last events settled, in the order they parked; every waiter once the worker stopped.
    mutating func wakeups() -> Wakeups {
        var wakeups = Wakeups()
        guard !waiters.isEmpty else { return wakeups }
        for id in waiters.keys.sorted() {
            guard let waiter = waiters[id], let wakeup = wakeup(of: waiter, action: &wakeups.action) else { continue }
            waiters[id] = nil
            wakeups.resume.append((id, wakeup))
        }
        // A flush above may have stopped the worker.
        if lifecycle == .stopped {
            for id in waiters.keys.sorted() { wakeups.resume.append((id, .stopped)) }
            waiters = [:]
        }
        return wakeups
    }

    /// Whether `waiter` is settled now, and how (what it waited for wins over a deadline or a cancellation that came
    /// with it); flushes output a settling waiter waits for.
    private mutating func wakeup(of waiter: Waiter, action: inout Action) -> Wakeup? {
        if lifecycle == .stopped { return .stopped }
        switch waiter.condition {
        case .jobsEnded(let set):
            let running = set.map { isRunning($0.sorted()) } ?? isRunningAnything
            return running ? waiter.forced : .met
        case .room(let limit):
            return buffered < limit || lifecycle != .running ? .met : waiter.forced
        case .stateCommitted(let queued):
            return !owns(queued) || !holdsState(of: queued) ? .met : waiter.forced
        case .outputSettled(let set):
            let settling = set.map { $0.sorted() } ?? assignedPartitions
            if !hasCommittable(settling) { return .met }
            if let forced = waiter.forced { return forced }
            if isWriting(settling) { return nil }
            guard waiter.flushing else { return .released }
            if case .none = action { action = flush() }
            return lifecycle == .stopped ? .stopped : nil
        }
    }

    private mutating func action(_ action: TransactionBatcher.Action) -> Action {
        switch action {
        case .none: return .none
        case .commit(let batch): return .commit(batch)
        case .stop(let error):
            stop(error)
            return .stop(error)
        }
    }
}
