/// Which consumed offsets of the jobs topic may be committed.
///
/// Jobs of different accounts finish in any order, but a Kafka offset commit says "everything before this
/// offset is done". Committing a later job's offset while an earlier one still runs would lose the earlier job
/// on a crash, so only each partition's contiguous prefix of finished jobs is committable; jobs finished after
/// a gap wait here until the gap closes.
///
/// Offsets are tracked in consumption order rather than by arithmetic, because a transactional topic has gaps
/// (commit markers) that no job ever fills.
struct OffsetTracker: Sendable {
    struct Partition: Sendable {
        /// The position a crash would resume from: the last committed offset, or the first offset consumed
        /// since assignment when nothing was committed yet.
        var committed: Int64?
        /// Consumed offsets not yet committed, oldest first, with whether the job finished.
        var pending: [(offset: Int64, finished: Bool)] = []
        var pendingStart = 0
        /// Index of the first unfinished pending entry at or after `pendingStart` (`pending.count` when all
        /// finished): the committable prefix is `pending[pendingStart..<finishedEnd]`, kept as jobs finish so
        /// asking for it does not walk the prefix again on every tick.
        var finishedEnd = 0
        /// Highest offset consumed, to ignore redelivery of offsets we already hold.
        var lastConsumed: Int64?

        var inFlight: Int { pending.count - pendingStart }

        mutating func advanceFinishedEnd() {
            while finishedEnd < pending.count, pending[finishedEnd].finished { finishedEnd += 1 }
        }
    }

    private var partitions: [Int32: Partition] = [:]

    /// Changes a partition's state in place. It is taken out of the dictionary first: a copy
    /// (`var state = partitions[p]`) would share `pending` with the stored value, and its first write would copy
    /// every pending offset — per consumed or finished job, the length of what waits behind a slow one.
    private mutating func withPartition<Result>(_ partition: Int32, _ body: (inout Partition) -> Result) -> Result? {
        guard var state = partitions.removeValue(forKey: partition) else { return nil }
        defer { partitions[partition] = state }
        return body(&state)
    }

    init() {}

    /// Starts tracking a newly assigned partition.
    mutating func assign(_ partition: Int32) {
        partitions[partition] = Partition()
    }

    /// Stops tracking partitions that moved to another worker; their unfinished jobs are no longer ours.
    mutating func revoke(_ revoked: some Sequence<Int32>) {
        for partition in revoked { partitions[partition] = nil }
    }

    func isAssigned(_ partition: Int32) -> Bool { partitions[partition] != nil }

    /// Records that the job at `offset` was taken from the topic.
    ///
    /// - Returns: false when the offset is not new (redelivered before a seek took effect, or the partition is
    ///   not assigned); the caller must then drop the message.
    @discardableResult
    mutating func consumed(partition: Int32, offset: Int64) -> Bool {
        withPartition(partition) { state in
            if let last = state.lastConsumed, offset <= last { return false }
            if state.committed == nil { state.committed = offset }
            state.lastConsumed = offset
            state.pending.append((offset, false))
            return true
        } ?? false
    }

    /// Records that the job at `offset` is done (its output is ready to be written).
    mutating func finished(partition: Int32, offset: Int64) {
        withPartition(partition) { state in
            // Offsets are consumed in increasing order, so the pending entries are sorted: a binary search, not a
            // scan of everything that waits behind a slow job.
            var low = state.pendingStart
            var high = state.pending.count
            while low < high {
                let middle = (low + high) / 2
                if state.pending[middle].offset < offset { low = middle + 1 } else { high = middle }
            }
            if low < state.pending.count, state.pending[low].offset == offset { state.pending[low].finished = true }
            state.advanceFinishedEnd()
        }
    }

    /// The offset to commit for each partition whose committable prefix moved past the committed position:
    /// the last contiguous finished offset + 1.
    func committable() -> [Int32: Int64] {
        var result: [Int32: Int64] = [:]
        for (partition, state) in partitions {
            if let next = Self.nextCommit(state), next != state.committed { result[partition] = next }
        }
        return result
    }

    /// The committable position of one partition, or nil when nothing new finished in order.
    func committable(partition: Int32) -> Int64? {
        guard let state = partitions[partition], let next = Self.nextCommit(state), next != state.committed else {
            return nil
        }
        return next
    }

    private static func nextCommit(_ state: Partition) -> Int64? {
        guard state.finishedEnd > state.pendingStart else { return nil }
        return state.pending[state.finishedEnd - 1].offset + 1
    }

    /// Records a successful commit: the offsets before each position are done for good.
    mutating func committed(_ offsets: [Int32: Int64]) {
        for (partition, position) in offsets {
            withPartition(partition) { state in
                while state.pendingStart < state.pending.count, state.pending[state.pendingStart].offset < position {
                    state.pendingStart += 1
                }
                state.finishedEnd = max(state.finishedEnd, state.pendingStart)
                state.advanceFinishedEnd()
                // Compact now and then so the array does not grow with the partition's history.
                if state.pendingStart > 1024, state.pendingStart * 2 > state.pending.count {
                    state.pending.removeFirst(state.pendingStart)
                    state.finishedEnd -= state.pendingStart
                    state.pendingStart = 0
                }
                if state.committed.map({ position > $0 }) ?? true { state.committed = position }
            }
        }
    }

    /// Forgets everything consumed after the committed position, as after an aborted transaction.
    ///
    /// - Returns: the offset to seek the consumer to, or nil when nothing was consumed since assignment (the
    ///   consumer's own position is then still right).
    mutating func rewind(partition: Int32) -> Int64? {
        withPartition(partition) { state -> Int64? in
            guard let committed = state.committed else { return nil }
            state.pending = []
            state.pendingStart = 0
            state.finishedEnd = 0
            state.lastConsumed = committed - 1
            return committed
        } ?? nil
    }

    /// Jobs consumed but not yet committed, per partition (in flight or waiting behind a gap).
    func uncommittedCount(partition: Int32) -> Int {
        partitions[partition]?.inFlight ?? 0
    }

    /// The committed (or first consumed) position of a partition.
    func committedPosition(partition: Int32) -> Int64? { partitions[partition]?.committed }
}
