import Foundation
import SyncModel

/// Decides when finished jobs are written and their offsets committed, like Kafka Streams' commit interval.
///
/// One transaction per job would cost a broker round trip per job; one per interval (or per `maxJobs`) costs
/// one per batch. Only each partition's contiguous prefix of finished jobs goes into a batch (via
/// ``OffsetTracker``), so a batch's offsets and its records always describe the same jobs: a crash after a
/// commit never re-runs a job whose output was written, and one before it re-runs only jobs whose output was
/// not. Pure and I/O-free: it lives inside ``WorkerStateMachine``, behind the worker's one lock; callers report
/// events and perform the returned ``Action``.
struct TransactionBatcher: Sendable {
    struct Configuration: Sendable {
        /// A batch is committed at the latest this long after its first job finished.
        var commitInterval: Duration = .milliseconds(100)
        /// A batch is committed as soon as this many jobs finished.
        var maxJobs = 500
        /// Attempts of one batch (a new transaction each) that failed for the cluster's sake (not a rebalance,
        /// not a rejected record) before the worker gives up and stops.
        var maxAttempts = 8

        init() {}
    }

    /// One transaction's worth of output.
    struct Batch: Sendable {
        var id: Int
        /// Activities, dead letters, status records, in job order: written first.
        var records: [OutgoingRecord]
        /// State records, written after the records they account for.
        var stateRecords: [OutgoingRecord]
        /// Jobs-topic partition → next offset to commit.
        var offsets: [Int32: Int64]
        var jobCount: Int
        /// 1 for the first try; a retry after an abort re-sends the same output.
        var attempt: Int
        /// The assignment the batch was built in. Its offsets may be committed only with that assignment's group
        /// metadata: committed under a later generation, they would move offsets behind the new owner's back.
        var generation: Int
        /// When the jobs in this batch finished.
        var finishedAt: [Date]
        /// When the jobs that ran were scheduled, for scheduled→committed latency.
        var scheduledAt: [Date]
        /// The finished jobs behind this batch by partition, to give them back if the batch is abandoned.
        var parts: [Int32: [Finished]] = [:]
    }

    enum Action: Sendable {
        case none
        case commit(Batch)
        /// The worker cannot continue (fenced, or a batch failed `maxAttempts` times); stop without committing.
        case stop(WorkerError)
    }

    /// How writing a batch failed, as the writer saw it after settling the transaction.
    enum CommitFailure: Sendable, CustomStringConvertible {
        /// The transaction was aborted (or, at least once, the records or offsets were not all confirmed): nothing
        /// of the batch counts, and the same output may be written again.
        /// - `rebalancing`: the group is rebalancing; the next assignment settles what is still ours.
        /// - `recordRejected`: the cluster refused a record for what it is (too large, malformed): sending it
        ///   again can never succeed, so the job that made it must be found and dead-lettered.
        case aborted(reason: String, rebalancing: Bool, recordRejected: Bool)
        /// The producer was fenced or broke for good: stop, never retry.
        case fatal(WorkerError)

        var description: String {
            switch self {
            case .aborted(let reason, _, _): reason
            case .fatal(let error): "\(error)"
            }
        }
    }

    struct Finished: Sendable {
        var offset: Int64
        var result: JobResult
        var at: Date
        /// Where the job came from, to dead-letter it if its output is refused.
        var origin: JobOrigin?
        /// How often the cluster refused this job's output (then its dead letter).
        var rejections = 0
        /// The account and its state before this job, to undo the job's state if its output is dead-lettered.
        var before: StateBefore?
        /// The output's size when it finished, counted against its partition until committed.
        var bytes = 0
    }

    /// An account's state before a job ran: what the in-memory store goes back to if the job's output is refused.
    struct StateBefore: Sendable {
        var accountId: String
        var state: StateRecord?
        /// The state the job left (nil: it did not change it). The store goes back only while it still holds
        /// this: once a later job of the account has built on it, that job's output stands, and undoing the
        /// refused job's state under it would make the next job repeat that output.
        var after: StateRecord?

        init(accountId: String, state: StateRecord?, after: StateRecord? = nil) {
            self.accountId = accountId
            self.state = state
            self.after = after
        }
    }

    let configuration: Configuration
    /// Builds the dead letter that replaces a job whose output the cluster refused.
    private let deadLetter: @Sendable (JobOrigin?, _ partition: Int32, _ offset: Int64, _ reason: String) -> JobResult
    private var tracker = OffsetTracker()
    /// Finished jobs waiting for their partition's committable prefix to reach them, in offset order. Behind a
    /// slow job at a partition's head this holds everything finished after it: a tick or a finished job must
    /// not cost its length, so what a batch needs is indexed (the prefix by offset, the oldest by a heap).
    private var waiting: [Int32: WaitingJobs] = [:]
    /// Finished jobs in `waiting`, all partitions.
    private var waitingCount = 0
    /// When each waiting job finished, oldest on top; entries of jobs no longer waiting are dropped lazily.
    private var finishTimes = FinishTimes()
    private var finishedSinceCommit = 0
    private var oldestWaiting: Date?
    private var inFlight: Batch?
    private var nextBatchId = 1
    private var stopped: WorkerError?
    /// Partitions of the in-flight batch revoked since it was built: the batch may no longer be written.
    private var revokedFromInFlight: Set<Int32> = []
    /// The current assignment's generation, the worker's one record of it: batches record it, and
    /// ``WorkerStateMachine`` reads it from here.
    private(set) var generation = 0
    /// While positive, batches hold a single job: a batch whose output the cluster refused is re-sent one job
    /// at a time so that only the job that made the bad record is dead-lettered.
    private var isolating = 0
    private(set) var commits = 0
    private(set) var aborts = 0
    /// Jobs whose output was replaced by a dead letter because the cluster refused it.
    private(set) var deadLettered = 0
    /// Bytes of finished output not yet committed, per partition (waiting or in the batch being written).
    private var uncommittedBytes: [Int32: Int] = [:]
    /// States to put back in the store: those of jobs whose output was replaced by a dead letter.
    private var statesToRestore: [(partition: Int32, before: StateBefore)] = []

    init(
        configuration: Configuration = Configuration(),
        deadLetter: @escaping @Sendable (JobOrigin?, Int32, Int64, String) -> JobResult = { _, _, _, _ in
            JobResult(outcome: .deadLettered)
        }
    ) {
        self.configuration = configuration
        self.deadLetter = deadLetter
    }

    /// Starts tracking newly assigned partitions, in assignment `generation`.
    mutating func assign(_ partitions: [Int32], generation: Int = 0) {
        self.generation = generation
        for partition in partitions {
            tracker.assign(partition)
            waitingCount -= waiting[partition]?.count ?? 0
            waiting[partition] = WaitingJobs()
            uncommittedBytes[partition] = 0
        }
    }

    /// Forgets revoked partitions: their uncommitted jobs belong to the next owner now.
    mutating func revoke(_ partitions: [Int32]) {
        if let batch = inFlight {
            revokedFromInFlight.formUnion(partitions.filter { batch.offsets[$0] != nil })
        }
        tracker.revoke(partitions)
        for partition in partitions {
            waitingCount -= waiting[partition]?.count ?? 0
            waiting[partition] = nil
            uncommittedBytes[partition] = nil
        }
    }

    /// Drops the uncommitted output of partitions being handed over, which stay assigned until the hand-over
    /// completes: after an abort mid-revocation their jobs belong to the next owner, and nothing of them may be
    /// committed any more. The in-flight batch, if it holds them, can then only be abandoned.
    mutating func discard(_ partitions: [Int32]) {
        if let batch = inFlight {
            revokedFromInFlight.formUnion(partitions.filter { batch.offsets[$0] != nil })
        }
        for partition in partitions where tracker.isAssigned(partition) {
            _ = tracker.rewind(partition: partition)
            waitingCount -= waiting[partition]?.count ?? 0
            waiting[partition] = WaitingJobs()
            uncommittedBytes[partition] = 0
        }
    }

    /// Records a consumed job; false means drop the message (redelivered, or its partition is not ours).
    mutating func consumed(partition: Int32, offset: Int64) -> Bool {
        tracker.consumed(partition: partition, offset: offset)
    }

    /// Records a finished job with its output.
    mutating func finished(
        partition: Int32, offset: Int64, result: JobResult, origin: JobOrigin? = nil, before: StateBefore? = nil,
        now: Date = Date()
    ) -> Action {
        guard tracker.isAssigned(partition) else { return .none }
        tracker.finished(partition: partition, offset: offset)
        let bytes = (result.records + result.stateRecords).reduce(0) { $0 + $1.estimatedSize }
        uncommittedBytes[partition, default: 0] += bytes
        add(
            Finished(offset: offset, result: result, at: now, origin: origin, before: before, bytes: bytes),
            to: partition)
        finishedSinceCommit += 1
        if oldestWaiting == nil { oldestWaiting = now }
        if finishedSinceCommit >= configuration.maxJobs { return nextBatch() }
        return .none
    }

    /// Called periodically: commits when the oldest waiting output is older than the commit interval.
    mutating func tick(now: Date = Date()) -> Action {
        guard let oldest = oldestWaiting, now.timeIntervalSince(oldest) >= configuration.commitInterval.timeInterval
        else { return .none }
        return nextBatch()
    }

    /// Commits whatever is committable now (before a revocation or shutdown).
    mutating func flush() -> Action { nextBatch() }

    mutating func commitSucceeded(batchId: Int, now: Date = Date()) -> Action {
        guard let batch = inFlight, batch.id == batchId else { return .none }
        inFlight = nil
        revokedFromInFlight = []
        commits += 1
        if isolating > 0 { isolating = max(0, isolating - batch.jobCount) }
        tracker.committed(batch.offsets)
        for (partition, entries) in batch.parts where uncommittedBytes[partition] != nil {
            uncommittedBytes[partition] = max(0, uncommittedBytes[partition]! - entries.reduce(0) { $0 + $1.bytes })
        }
        if let oldest = oldestWaiting,
            isolating > 0 || finishedSinceCommit >= configuration.maxJobs
                || now.timeIntervalSince(oldest) >= configuration.commitInterval.timeInterval
        {
            return nextBatch()
        }
        return .none
    }

    /// Reports a failed write of the in-flight batch; the writer has settled its transaction already.
    ///
    /// - An aborted batch is re-sent with the same output in a new transaction: the jobs already ran (and may
    ///   have consumed a one-time token refresh), so repeating their output is safer than repeating the jobs.
    ///   Rebalancing failures do not count toward `maxAttempts` (nothing is broken; the revocation that follows
    ///   settles which partitions are still ours), and a batch holding a revoked partition is abandoned instead.
    /// - A refused record splits the batch into one-job batches; a one-job batch whose output is refused has it
    ///   replaced by a dead letter, so one bad job can never stop the worker.
    /// - Fatal stops the worker.
    mutating func commitFailed(batchId: Int, failure: CommitFailure, now: Date = Date()) -> Action {
        guard var batch = inFlight, batch.id == batchId else { return .none }
        aborts += 1
        switch failure {
        case .fatal(let error):
            return stop(error)
        case .aborted(let reason, let rebalancing, let recordRejected):
            if !revokedFromInFlight.isEmpty { return abandon(batchId: batchId, now: now) }
            if recordRejected {
                if batch.jobCount > 1 {
                    isolating = max(isolating, batch.jobCount)
                    return giveBack(batch, now: now)
                }
                // The one job of this batch made the record the cluster refuses: dead-letter the job instead. A dead
                // letter refused in turn is replaced by one without the original value; if even that is refused,
                // the dead-letter topic itself cannot take records, and no job can be settled: stop.
                for (partition, entries) in batch.parts {
                    var replacedEntries: [Finished] = []
                    for entry in entries {
                        var replaced = entry
                        replaced.rejections += 1
                        guard replaced.rejections <= 2 else {
                            return stop(
                                WorkerError.transactionFailed(
                                    "the cluster refuses even a minimal dead letter for job \(partition)@\(entry.offset): "
                                        + "\(reason); check the dead-letter topic's max.message.bytes"))
                        }
                        let message = "the cluster refused this job's output: \(reason)"
                        var origin = entry.origin
                        if replaced.rejections > 1 { origin?.value = nil }
                        replaced.result = deadLetter(origin, partition, entry.offset, message)
                        if replaced.rejections == 1, let before = entry.before {
                            statesToRestore.append((partition, before))
                        }
                        replacedEntries.append(replaced)
                    }
                    batch.parts[partition] = replacedEntries
                }
                deadLettered += batch.jobCount
                return giveBack(batch, now: now)
            }
            if rebalancing {
                return .commit(batch)
            }
            guard batch.attempt < configuration.maxAttempts else {
                return stop(
                    WorkerError.transactionFailed("a transaction failed \(batch.attempt) times, last: \(reason)"))
            }
            batch.attempt += 1
            inFlight = batch
            return .commit(batch)
        }
    }

    /// Stops for good. The failed batch is no longer in flight (its writer has returned and settled or abandoned its
    /// transaction), so nothing waits on it: a revocation or a drain waiting for it ends.
    private mutating func stop(_ error: WorkerError) -> Action {
        stopped = error
        inFlight = nil
        revokedFromInFlight = []
        return .stop(error)
    }

    /// Whether this batch may still be written: it is the one in flight, of the current assignment, and none of
    /// its partitions was revoked.
    func isValid(batchId: Int) -> Bool {
        guard let batch = inFlight, batch.id == batchId else { return false }
        return revokedFromInFlight.isEmpty && batch.generation == generation
    }

    /// Drops an invalidated batch without writing it. The jobs of its revoked partitions are re-consumed by
    /// their next owner; those of partitions still ours go back to waiting and are committed in the next batch
    /// (their offsets are still uncommitted, so dropping their output would commit the offsets without it).
    mutating func abandon(batchId: Int, now: Date = Date()) -> Action {
        guard let batch = inFlight, batch.id == batchId else { return .none }
        var kept = batch
        kept.parts = batch.parts.filter { !revokedFromInFlight.contains($0.key) }
        return giveBack(kept, now: now)
    }

    /// Puts a batch's jobs back to waiting (for partitions still assigned) and builds the next batch.
    private mutating func giveBack(_ batch: Batch, now: Date) -> Action {
        for (partition, entries) in batch.parts where tracker.isAssigned(partition) {
            for entry in entries { add(entry, to: partition) }
            finishedSinceCommit += entries.count
            oldestWaiting = min(oldestWaiting ?? now, entries.map(\.at).min() ?? now)
        }
        inFlight = nil
        revokedFromInFlight = []
        return nextBatch()
    }

    /// The states of dead-lettered jobs to put back in the store, once: their new state was never written.
    /// Whether a state record of `accountId` in `partition` waits to be committed or is being written: a record of
    /// the account written apart from the batches now could be overwritten by it.
    func holdsState(of accountId: String, partition: Int32) -> Bool {
        // Linear in what the partition holds, but asked only when a sync refreshed a token pair (hours apart).
        func holds(_ entry: Finished) -> Bool {
            entry.before?.accountId == accountId && !entry.result.stateRecords.isEmpty
        }
        return (waiting[partition]?.elements.contains(where: holds) ?? false)
            || (inFlight?.parts[partition]?.contains(where: holds) ?? false)
    }

    mutating func takeStatesToRestore() -> [(partition: Int32, before: StateBefore)] {
        defer { statesToRestore = [] }
        return statesToRestore
    }

    var counts: (commits: Int, aborts: Int) { (commits, aborts) }

    /// What a partition holds in memory until its next commit: jobs consumed and not committed (queued, running
    /// or finished behind an earlier one), and the bytes of their finished output.
    func uncommitted(partition: Int32) -> (jobs: Int, bytes: Int) {
        (tracker.uncommittedCount(partition: partition), uncommittedBytes[partition] ?? 0)
    }

    /// Whether the in-flight batch holds any of these partitions.
    func inFlightHolds(partitions: [Int32]) -> Bool {
        guard let batch = inFlight else { return false }
        return partitions.contains { batch.offsets[$0] != nil }
    }

    /// Whether a commit is pending or possible for these partitions (used to drain them before a handover).
    func hasCommittable(partitions: [Int32]) -> Bool {
        if inFlightHolds(partitions: partitions) { return true }
        return partitions.contains { tracker.committable(partition: $0) != nil }
    }

    func committedPosition(partition: Int32) -> Int64? { tracker.committedPosition(partition: partition) }

    /// Puts a finished job among its partition's waiting ones, and its finish time on the heap.
    private mutating func add(_ entry: Finished, to partition: Int32) {
        waiting[partition, default: WaitingJobs()].insert(entry)
        waitingCount += 1
        finishTimes.push(.init(at: entry.at, partition: partition, offset: entry.offset))
        // Entries of jobs that left `waiting` stay on the heap until they reach its top; rebuild it when they
        // outnumber the live ones, so it stays proportional to what waits (amortised: each rebuild follows as many
        // removals as it costs).
        if finishTimes.count > 2 * waitingCount + 64 {
            finishTimes = FinishTimes(
                waiting.flatMap { partition, jobs in
                    jobs.elements.map { FinishTime(at: $0.at, partition: partition, offset: $0.offset) }
                })
        }
    }

    /// When the oldest waiting job finished: the heap's top, once entries of jobs no longer waiting are dropped.
    private mutating func oldestWaitingNow() -> Date? {
        while let top = finishTimes.min {
            if waiting[top.partition]?.finishTime(offset: top.offset) == top.at { return top.at }
            finishTimes.popMin()
        }
        return nil
    }

    private mutating func nextBatch() -> Action {
        if let stopped { return .stop(stopped) }
        guard inFlight == nil else { return .none }
        var records: [OutgoingRecord] = []
        var stateRecords: [OutgoingRecord] = []
        var offsets: [Int32: Int64] = [:]
        var finishedAt: [Date] = []
        var scheduledAt: [Date] = []
        var jobs = 0
        var parts: [Int32: [Finished]] = [:]
        for (partition, position) in tracker.committable().sorted(by: { $0.key < $1.key }) {
            guard waiting[partition] != nil else { continue }
            var end = position
            if isolating > 0 {
                // One job only: the first of this partition's committable prefix.
                guard jobs == 0, let first = waiting[partition]?.first, first.offset < position else { continue }
                end = first.offset + 1
            }
            // Output in offset order, so a partition's records keep the jobs' order. Taken in place: a copy of the
            // partition's waiting jobs would be copied again on its first write.
            let taken = waiting[partition]!.removePrefix(below: end)
            for entry in taken {
                records += entry.result.records
                stateRecords += entry.result.stateRecords
                finishedAt.append(entry.at)
                if let scheduled = entry.result.scheduledAt { scheduledAt.append(scheduled) }
            }
            if !taken.isEmpty { parts[partition] = taken }
            waitingCount -= taken.count
            jobs += taken.count
            offsets[partition] = end
        }
        oldestWaiting = oldestWaitingNow()
        finishedSinceCommit = waitingCount
        guard !offsets.isEmpty else { return .none }
        let batch = Batch(
            id: nextBatchId, records: records, stateRecords: stateRecords, offsets: offsets, jobCount: jobs,
            attempt: 1, generation: generation, finishedAt: finishedAt, scheduledAt: scheduledAt, parts: parts)
        nextBatchId += 1
        inFlight = batch
        revokedFromInFlight = []
        return .commit(batch)
    }
}

/// One partition's finished jobs waiting to be committed, sorted by offset.
///
/// Jobs finish in about the order they were consumed, so an insertion lands at or near the end; a batch takes a
/// prefix (everything below the committable position), which only moves `start` (the taken slots are emptied at
/// once, so their output is freed). So finishing a job costs a binary search, and taking k jobs costs k, whatever
/// waits behind them.
struct WaitingJobs: Sendable {
    /// nil below `start` only.
    private var entries: [TransactionBatcher.Finished?] = []
    private var start = 0

    var count: Int { entries.count - start }
    var first: TransactionBatcher.Finished? { start < entries.count ? entries[start] : nil }
    var elements: some Sequence<TransactionBatcher.Finished> { entries[start...].lazy.compactMap { $0 } }

    /// Index of the first entry at or above `offset`.
    private func index(of offset: Int64) -> Int {
        var low = start
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle]!.offset < offset { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Adds a job (offsets are unique within a partition).
    mutating func insert(_ entry: TransactionBatcher.Finished) {
        if entries.last.map({ $0!.offset < entry.offset }) ?? true {
            entries.append(entry)
        } else if start > 0, entry.offset < entries[start]!.offset {
            // Given back from an abandoned batch: below everything still waiting.
            start -= 1
            entries[start] = entry
        } else {
            entries.insert(entry, at: index(of: entry.offset))
        }
    }

    /// When the job at `offset` finished, if it waits here.
    func finishTime(offset: Int64) -> Date? {
        let index = index(of: offset)
        guard index < entries.count, let entry = entries[index], entry.offset == offset else { return nil }
        return entry.at
    }

    /// Removes and returns the jobs below `end`, in offset order.
    mutating func removePrefix(below end: Int64) -> [TransactionBatcher.Finished] {
        let cut = index(of: end)
        var taken: [TransactionBatcher.Finished] = []
        taken.reserveCapacity(cut - start)
        for index in start..<cut {
            taken.append(entries[index]!)
            entries[index] = nil
        }
        start = cut
        if start == entries.count {
            entries.removeAll()
            start = 0
        } else if start > 1024, start * 2 > entries.count {
            // Compact now and then so the array does not grow with the partition's history.
            entries.removeFirst(start)
            start = 0
        }
        return taken
    }
}

/// A finished job's finish time, for ``FinishTimes``.
struct FinishTime: Sendable {
    var at: Date
    var partition: Int32
    var offset: Int64
}

/// A binary min-heap of finish times: the oldest waiting job in O(log n), not a scan of everything waiting.
struct FinishTimes: Sendable {
    private var heap: [FinishTime] = []

    init() {}

    init(_ elements: [FinishTime]) {
        heap = elements
        var index = heap.count / 2
        while index > 0 {
            index -= 1
            siftDown(index)
        }
    }

    var count: Int { heap.count }
    var min: FinishTime? { heap.first }

    mutating func push(_ element: FinishTime) {
        heap.append(element)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].at < heap[parent].at else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popMin() {
        guard !heap.isEmpty else { return }
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        siftDown(0)
    }

    private mutating func siftDown(_ index: Int) {
        var parent = index
        while true {
            var smallest = parent
            let left = 2 * parent + 1
            let right = left + 1
            if left < heap.count, heap[left].at < heap[smallest].at { smallest = left }
            if right < heap.count, heap[right].at < heap[smallest].at { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
