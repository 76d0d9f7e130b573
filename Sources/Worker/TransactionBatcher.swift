public import Foundation
import Synchronization

/// Decides when finished jobs are written and their offsets committed, like Kafka Streams' commit interval.
///
/// One transaction per job would cost a broker round trip per job; one per interval (or per `maxJobs`) costs
/// one per batch. Only each partition's contiguous prefix of finished jobs goes into a batch (via
/// ``OffsetTracker``), so a batch's offsets and its records always describe the same jobs: a crash after a
/// commit never re-runs a job whose output was written, and one before it re-runs only jobs whose output was
/// not. A lock-protected state machine: callers report events and perform the returned ``Action``.
public final class TransactionBatcher: Sendable {
    public struct Configuration: Sendable {
        /// A batch is committed at the latest this long after its first job finished.
        public var commitInterval: Duration = .milliseconds(100)
        /// A batch is committed as soon as this many jobs finished.
        public var maxJobs = 500
        /// Attempts of one batch (a new transaction each) before the worker gives up and stops.
        public var maxAttempts = 5

        public init() {}
    }

    /// One transaction's worth of output.
    public struct Batch: Sendable {
        public var id: Int
        /// Activities, dead letters, status records, in job order: written first.
        public var records: [OutgoingRecord]
        /// State records, written after the records they account for.
        public var stateRecords: [OutgoingRecord]
        /// Jobs-topic partition → next offset to commit.
        public var offsets: [Int32: Int64]
        public var jobCount: Int
        /// 1 for the first try; a retry after an abort re-sends the same output.
        public var attempt: Int
        /// When the jobs in this batch finished.
        public var finishedAt: [Date]
        /// When the jobs that ran were scheduled, for scheduled→committed latency.
        public var scheduledAt: [Date]
    }

    public enum Action: Sendable {
        case none
        case commit(Batch)
        /// The worker cannot continue (fenced, or a batch failed `maxAttempts` times); stop without committing.
        case stop(reason: String)
    }

    struct Finished: Sendable {
        var offset: Int64
        var result: JobResult
        var at: Date
    }

    struct State: Sendable {
        var tracker = OffsetTracker()
        var waiting: [Int32: [Finished]] = [:]
        var finishedSinceCommit = 0
        var oldestWaiting: Date?
        var inFlight: Batch?
        var nextBatchId = 1
        var stopped: String?
        var commits = 0
        var aborts = 0
    }

    public let configuration: Configuration
    private let state = Mutex(State())

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    public func assign(_ partitions: [Int32]) {
        state.withLock { state in
            for partition in partitions {
                state.tracker.assign(partition)
                state.waiting[partition] = []
            }
        }
    }

    /// Forgets revoked partitions: their uncommitted jobs belong to the next owner now.
    public func revoke(_ partitions: [Int32]) {
        state.withLock { state in
            state.tracker.revoke(partitions)
            for partition in partitions { state.waiting[partition] = nil }
        }
    }

    /// Records a consumed job; false means drop the message (redelivered, or its partition is not ours).
    public func consumed(partition: Int32, offset: Int64) -> Bool {
        state.withLock { $0.tracker.consumed(partition: partition, offset: offset) }
    }

    /// Records a finished job with its output.
    public func finished(partition: Int32, offset: Int64, result: JobResult, now: Date = Date()) -> Action {
        state.withLock { state in
            guard state.tracker.isAssigned(partition) else { return .none }
            state.tracker.finished(partition: partition, offset: offset)
            state.waiting[partition, default: []].append(Finished(offset: offset, result: result, at: now))
            state.finishedSinceCommit += 1
            if state.oldestWaiting == nil { state.oldestWaiting = now }
            if state.finishedSinceCommit >= configuration.maxJobs { return Self.nextBatch(&state) }
            return .none
        }
    }

    /// Called periodically: commits when the oldest waiting output is older than the commit interval.
    public func tick(now: Date = Date()) -> Action {
        state.withLock { state in
            guard let oldest = state.oldestWaiting,
                now.timeIntervalSince(oldest) >= configuration.commitInterval.seconds
            else { return .none }
            return Self.nextBatch(&state)
        }
    }

    /// Commits whatever is committable now (before a revocation or shutdown).
    public func flush() -> Action {
        state.withLock { Self.nextBatch(&$0) }
    }

    public func commitSucceeded(batchId: Int, now: Date = Date()) -> Action {
        state.withLock { state in
            guard let batch = state.inFlight, batch.id == batchId else { return .none }
            state.inFlight = nil
            state.commits += 1
            state.tracker.committed(batch.offsets)
            if let oldest = state.oldestWaiting,
                state.finishedSinceCommit >= configuration.maxJobs
                    || now.timeIntervalSince(oldest) >= configuration.commitInterval.seconds
            {
                return Self.nextBatch(&state)
            }
            return .none
        }
    }

    /// Reports a failed commit. An abortable failure re-sends the same output in a new transaction: the jobs
    /// already ran (and may have consumed a one-time token refresh), so repeating their output is safer than
    /// repeating the jobs.
    ///
    /// - Parameter groupRebalancing: the failure was the consumer group rebalancing (the revocation that follows
    ///   settles which partitions are still ours); such retries do not count toward `maxAttempts`, since nothing
    ///   is broken and giving up would stop a healthy worker whenever another one joins.
    public func commitFailed(batchId: Int, fatal: Bool, groupRebalancing: Bool = false, reason: String) -> Action {
        state.withLock { state in
            guard var batch = state.inFlight, batch.id == batchId else { return .none }
            state.aborts += 1
            if fatal {
                state.stopped = reason
                return .stop(reason: reason)
            }
            if groupRebalancing {
                state.inFlight = batch
                return .commit(batch)
            }
            guard batch.attempt < configuration.maxAttempts else {
                let message = "a transaction failed \(batch.attempt) times, last: \(reason)"
                state.stopped = message
                return .stop(reason: message)
            }
            batch.attempt += 1
            state.inFlight = batch
            return .commit(batch)
        }
    }

    public var isCommitting: Bool { state.withLock { $0.inFlight != nil } }
    public var counts: (commits: Int, aborts: Int) { state.withLock { ($0.commits, $0.aborts) } }

    /// Whether every consumed job of these partitions finished and was committed or is in the in-flight batch.
    public func hasUncommitted(partitions: [Int32]) -> Bool {
        state.withLock { state in
            if let batch = state.inFlight, partitions.contains(where: { batch.offsets[$0] != nil }) { return true }
            return partitions.contains { !(state.waiting[$0]?.isEmpty ?? true) }
        }
    }

    /// Whether a commit is pending or possible for these partitions (used to drain them before a handover).
    public func hasCommittable(partitions: [Int32]) -> Bool {
        state.withLock { state in
            if let batch = state.inFlight, partitions.contains(where: { batch.offsets[$0] != nil }) { return true }
            return partitions.contains { state.tracker.committable(partition: $0) != nil }
        }
    }

    public var assignedPartitions: [Int32] { state.withLock { $0.tracker.assignedPartitions } }

    public func committedPosition(partition: Int32) -> Int64? {
        state.withLock { $0.tracker.committedPosition(partition: partition) }
    }

    public func isAssigned(_ partition: Int32) -> Bool { state.withLock { $0.tracker.isAssigned(partition) } }

    /// Forgets consumed-but-uncommitted work of a partition and returns where to seek the consumer.
    public func rewind(partition: Int32) -> Int64? {
        state.withLock { state in
            state.waiting[partition] = []
            return state.tracker.rewind(partition: partition)
        }
    }

    public func allFinished(partitions: [Int32]) -> Bool {
        state.withLock { state in partitions.allSatisfy { state.tracker.allFinished(partition: $0) } }
    }

    private static func nextBatch(_ state: inout State) -> Action {
        if let reason = state.stopped { return .stop(reason: reason) }
        guard state.inFlight == nil else { return .none }
        var records: [OutgoingRecord] = []
        var stateRecords: [OutgoingRecord] = []
        var offsets: [Int32: Int64] = [:]
        var finishedAt: [Date] = []
        var scheduledAt: [Date] = []
        var jobs = 0
        var oldestLeft: Date?
        for (partition, position) in state.tracker.committable() {
            guard var waiting = state.waiting[partition] else { continue }
            var taken = 0
            // Output in offset order, so a partition's records keep the jobs' order.
            for entry in waiting.sorted(by: { $0.offset < $1.offset }) where entry.offset < position {
                records += entry.result.records
                stateRecords += entry.result.stateRecords
                finishedAt.append(entry.at)
                if let scheduled = entry.result.scheduledAt { scheduledAt.append(scheduled) }
                taken += 1
            }
            waiting.removeAll { $0.offset < position }
            state.waiting[partition] = waiting
            jobs += taken
            offsets[partition] = position
        }
        for waiting in state.waiting.values {
            for entry in waiting where oldestLeft.map({ entry.at < $0 }) ?? true { oldestLeft = entry.at }
        }
        state.oldestWaiting = oldestLeft
        state.finishedSinceCommit = state.waiting.values.reduce(0) { $0 + $1.count }
        guard !offsets.isEmpty else { return .none }
        let batch = Batch(
            id: state.nextBatchId, records: records, stateRecords: stateRecords, offsets: offsets, jobCount: jobs,
            attempt: 1, finishedAt: finishedAt,
            scheduledAt: scheduledAt)
        state.nextBatchId += 1
        state.inFlight = batch
        return .commit(batch)
    }
}
