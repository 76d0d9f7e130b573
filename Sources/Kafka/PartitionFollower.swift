public import Logging
import Synchronization

/// Follows partitions of one topic (a compacted table such as the accounts topic) from where each was last read,
/// through one long-lived client: a catch-up costs a watermark query per partition and the new records, not a new
/// connection.
///
/// It keeps nothing itself: the caller folds the records ``catchUp(from:timeout:onBatch:)`` hands over and keeps
/// the offset each partition ended at for the next call. Calls must not overlap (each assigns the partitions it
/// reads); an overlapping call fails with `KafkaError.closed`.
public final class PartitionFollower: Sendable {
    private let topic: String
    private let client: RDKafkaClient
    private let busy = Atomic(false)
    private let batchBytes: Int

    /// - Parameters:
    ///   - isolationLevel: with `.readCommitted` a catch-up ends at the last stable offset: records of a
    ///     transaction still open are read by a later call.
    ///   - maxBufferedBytes: librdkafka's prefetch for this client.
    public init(
        configuration: KafkaConfiguration, topic: String, isolationLevel: IsolationLevel,
        maxBufferedBytes: Int = 4 << 20, batchBytes: Int = 256 << 10, logger: Logger
    ) throws(KafkaError) {
        self.topic = topic
        self.batchBytes = batchBytes
        let reader = PartitionReader(
            configuration: configuration, isolationLevel: isolationLevel, maxBufferedBytes: maxBufferedBytes,
            logger: logger)
        client = try reader.makeClient(isolationLevel)
    }

    /// Reads each partition from the offset given for it up to its high watermark as of this call (in the client's
    /// isolation level), handing the records to `onBatch` on the reading thread in offset order per partition.
    ///
    /// A failed call may have handed over some batches: reading them again from the same offsets is harmless for
    /// a fold that keeps the newest record per key.
    /// - Returns: the offset to continue each partition from (its high watermark, or the given offset when the
    ///   partition has nothing new).
    /// - Throws: `KafkaError` (`.timedOut` when a partition's end was not reached in time, `.closed` when the calling
    ///   task was cancelled: the read stops within about 100 ms, a watermark query in flight within `timeout`).
    public func catchUp(
        from offsets: [Int32: Int64], timeout: Duration, onBatch: @escaping @Sendable ([ConsumerMessage]) -> Void
    ) async throws(KafkaError) -> [Int32: Int64] {
        guard !offsets.isEmpty else { return [:] }
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            throw KafkaError.closed("PartitionFollower.catchUp: a catch-up of \(topic) is already running")
        }
        defer { busy.store(false, ordering: .releasing) }
        let batchBytes = self.batchBytes
        let cancelled = CancellationFlag()
        let result = await withTaskCancellationHandler { () async -> Result<[Int32: Int64], KafkaError> in
            do throws(KafkaError) {
                return .success(
                    try await catchUp(
                        offsets, timeout: timeout, cancelled: cancelled, batchBytes: batchBytes, onBatch: onBatch))
            } catch {
                return .failure(error)
            }
        } onCancel: {
            cancelled.set()
        }
        return try result.get()
    }

    private func catchUp(
        _ offsets: [Int32: Int64], timeout: Duration, cancelled: CancellationFlag, batchBytes: Int,
        onBatch: @escaping @Sendable ([ConsumerMessage]) -> Void
    ) async throws(KafkaError) -> [Int32: Int64] {
        let topic = self.topic
        return try await client.blocking("catching up \(topic)") { rk in
            let deadline = ContinuousClock.now + timeout
            var extents: [Int32: PartitionReader.Extent] = [:]
            var ends = offsets
            for (partition, from) in offsets.sorted(by: { $0.key < $1.key }) {
                // The whole call ends by `deadline`, however many partitions are asked (a gone cluster answers none).
                let remaining = deadline - ContinuousClock.now
                if cancelled.isSet { return .failure(.closed("catching up \(topic): cancelled")) }
                guard remaining > .zero else {
                    return .failure(.timedOut("asking \(topic)'s watermarks", after: timeout))
                }
                switch rk.queryWatermarks(topic: topic, partition: partition, timeout: remaining) {
                case .success(let watermarks):
                    let start = max(from, watermarks.low)
                    if watermarks.high > start {
                        extents[partition] = PartitionReader.Extent(start: start, end: watermarks.high)
                        ends[partition] = watermarks.high
                    }
                case .failure(let error):
                    return .failure(error)
                }
            }
            guard !extents.isEmpty else { return .success(ends) }
            let read = PartitionReader.readToEnd(
                rk, topic: topic, extents: extents, deadline: deadline, timeout: timeout, cancelled: cancelled,
                batchBytes: batchBytes, onBatch: onBatch)
            // Unassigned either way: the next call assigns the partitions it reads at the offsets it is given.
            rk.unassign()
            return read.map { ends }
        }
    }

    /// Each partition's high watermark now (in the client's isolation level): where a follower that wants only what
    /// comes next starts.
    public func ends(of partitions: [Int32], timeout: Duration) async throws(KafkaError) -> [Int32: Int64] {
        let topic = self.topic
        return try await client.blocking("asking \(topic)'s watermarks") { rk in
            var ends: [Int32: Int64] = [:]
            for partition in partitions {
                switch rk.queryWatermarks(topic: topic, partition: partition, timeout: timeout) {
                case .success(let watermarks): ends[partition] = watermarks.high
                case .failure(let error): return .failure(error)
                }
            }
            return .success(ends)
        }
    }

    /// Destroys the client (waiting at most `timeout`).
    public func close(timeout: Duration = .seconds(10)) async {
        await client.destroy(timeout: timeout, pollThread: nil)
    }
}
