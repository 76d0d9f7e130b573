public import Logging
import Synchronization

/// Reads one partition from its beginning up to its high watermark at the time of the call, without joining a
/// group (nothing is committed).
///
/// Used to restore state (accounts, per-partition sync state) from compacted topics before processing.
///
/// With `.readCommitted` the read does not stop at the last stable offset: a consumer that stops there (the first
/// `PARTITION_EOF`) misses every record committed after a transaction that is still open — a crashed producer's,
/// until it is fenced or times out — while the group's committed offsets already count those records. The read
/// therefore goes on until the position reaches the high watermark captured at the start, which an open
/// transaction below it reaches only once it is resolved (committed, aborted, fenced or timed out by
/// `transaction.timeout.ms`). Aborted records and commit markers are skipped by librdkafka but still move the
/// position, so the end is judged by the position, not by the last record seen. The high watermark itself is asked
/// for with `read_uncommitted`: ListOffsets answers in the asking client's isolation level, and a `read_committed`
/// "latest offset" is the last stable offset again.
/// - Parameters:
///   - isolationLevel: `.readCommitted` returns committed records only, and waits for open transactions below the
///     high watermark to resolve.
///   - timeout: for the whole read; keep it above the producers' `transaction.timeout.ms`.
///   - maxBufferedBytes: how much librdkafka may prefetch for this read (`queued.max.messages.kbytes`), so many
///     reads at once stay bounded in memory.
/// - Returns: the messages in offset order.
/// - Throws: `KafkaError` (`.timedOut` if the end was not reached in time, `.closed` if the calling task was
///   cancelled — the read stops within about 100 ms).
public func readPartitionToEnd(
    configuration: KafkaConfiguration, topic: String, partition: Int32, isolationLevel: IsolationLevel,
    timeout: Duration, maxBufferedBytes: Int = 16 << 20, logger: Logger
) async throws(KafkaError) -> [ConsumerMessage] {
    let reader = PartitionReader(
        configuration: configuration, isolationLevel: isolationLevel, maxBufferedBytes: maxBufferedBytes,
        logger: logger)
    // One named partition: its watermarks are asked directly, so a missing topic or partition fails there (a
    // missing state partition is a misconfiguration, not an empty state) without a metadata request first.
    return try await reader.read(topic: topic, timeout: timeout, partitions: .one(partition)).messages
}

/// Reads several partitions of one topic to their high watermarks, like ``readPartitionToEnd(configuration:topic:partition:isolationLevel:timeout:maxBufferedBytes:logger:)``,
/// through one reading client: a whole topic costs one connection, not one per partition.
/// - Parameters:
///   - partitions: given the topic's partition count, the partitions to read (all of them: `{ Array(0..<$0) }`).
/// - Returns: the topic's partition count (0 when the topic does not exist, and then no messages), and the
///   messages, in offset order within each partition.
/// - Throws: `KafkaError` (`.timedOut` if the end was not reached in time).
public func readPartitionsToEnd(
    configuration: KafkaConfiguration, topic: String, partitions: @escaping @Sendable (Int32) -> [Int32],
    isolationLevel: IsolationLevel, timeout: Duration, maxBufferedBytes: Int = 16 << 20, logger: Logger
) async throws(KafkaError) -> (partitionCount: Int32, messages: [ConsumerMessage]) {
    let reader = PartitionReader(
        configuration: configuration, isolationLevel: isolationLevel, maxBufferedBytes: maxBufferedBytes,
        logger: logger)
    return try await reader.read(topic: topic, timeout: timeout, partitions: .fromCount(partitions))
}

/// Reads partitions of one topic to their high watermarks like ``readPartitionsToEnd(configuration:topic:partitions:isolationLevel:timeout:maxBufferedBytes:logger:)``,
/// handing the records over in batches as they arrive instead of keeping them: memory is the batch and
/// librdkafka's prefetch (`maxBufferedBytes`), whatever the length of the log.
///
/// `onBatch` runs on the reading thread, in offset order within each partition, and the next fetch waits for it:
/// keep it short and non-blocking (decode, fold into a dictionary, apply under a lock). A read that fails may have
/// delivered batches already; start the fold afresh when retrying.
/// - Parameters:
///   - batchBytes: a batch is handed over once its keys and values reach this many bytes (or the partitions end).
/// - Returns: the topic's partition count, and the offset each read partition ended at (its high watermark at the
///   start; partitions with no records are absent).
public func readPartitionsToEnd(
    configuration: KafkaConfiguration, topic: String, partitions: @escaping @Sendable (Int32) -> [Int32],
    isolationLevel: IsolationLevel, timeout: Duration, maxBufferedBytes: Int = 16 << 20, batchBytes: Int = 1 << 20,
    logger: Logger, onBatch: @escaping @Sendable ([ConsumerMessage]) -> Void
) async throws(KafkaError) -> (partitionCount: Int32, ends: [Int32: Int64]) {
    let reader = PartitionReader(
        configuration: configuration, isolationLevel: isolationLevel, maxBufferedBytes: maxBufferedBytes,
        logger: logger)
    return try await reader.stream(
        topic: topic, timeout: timeout, partitions: .fromCount(partitions), batchBytes: batchBytes, onBatch: onBatch)
}

/// Reads one partition to its high watermark like ``readPartitionToEnd(configuration:topic:partition:isolationLevel:timeout:maxBufferedBytes:logger:)``,
/// handing the records to `onBatch` in bounded batches as they arrive (see the many-partition form above for the
/// rules `onBatch` follows). No metadata request: a missing topic or partition fails the watermark query.
/// - Returns: the offset the read ended at (the high watermark at the start; 0 for an empty partition).
public func readPartitionToEnd(
    configuration: KafkaConfiguration, topic: String, partition: Int32, isolationLevel: IsolationLevel,
    timeout: Duration, maxBufferedBytes: Int = 16 << 20, batchBytes: Int = 1 << 20, logger: Logger,
    onBatch: @escaping @Sendable ([ConsumerMessage]) -> Void
) async throws(KafkaError) -> Int64 {
    let reader = PartitionReader(
        configuration: configuration, isolationLevel: isolationLevel, maxBufferedBytes: maxBufferedBytes,
        logger: logger)
    let (_, ends) = try await reader.stream(
        topic: topic, timeout: timeout, partitions: .one(partition), batchBytes: batchBytes, onBatch: onBatch)
    return ends[partition] ?? 0
}

/// Reads one partition to its high watermark keeping only the newest record per key, as compaction will: the
/// result is bounded by the number of live keys, not by the log's history (a state partition of 200 versions of
/// each of 2,000 accounts costs 2,000 records here). A tombstone removes its key; records without a key are
/// dropped.
/// - Returns: the newest record of every live key, in offset order, and the offset the read ended at.
public func readNewestPerKey(
    configuration: KafkaConfiguration, topic: String, partition: Int32, isolationLevel: IsolationLevel,
    timeout: Duration, maxBufferedBytes: Int = 16 << 20, logger: Logger
) async throws(KafkaError) -> (messages: [ConsumerMessage], end: Int64) {
    let newest = NewestPerKey()
    let end = try await readPartitionToEnd(
        configuration: configuration, topic: topic, partition: partition, isolationLevel: isolationLevel,
        timeout: timeout, maxBufferedBytes: maxBufferedBytes, batchBytes: 256 << 10, logger: logger,
        onBatch: { newest.add($0) })
    return (newest.messages, end)
}

/// The fold behind ``readNewestPerKey(configuration:topic:partition:isolationLevel:timeout:maxBufferedBytes:logger:)``.
private final class NewestPerKey: @unchecked Sendable {
    // @unchecked: `add` runs only on the one reading thread, `messages` only after the read has returned.
    private var byKey: [[UInt8]: ConsumerMessage] = [:]

    func add(_ batch: [ConsumerMessage]) {
        for message in batch {
            guard let key = message.key else { continue }
            if message.value == nil { byKey[key] = nil } else { byKey[key] = message }
        }
    }

    var messages: [ConsumerMessage] { byKey.values.sorted { $0.offset < $1.offset } }
}

/// What the reads share: the extent of each partition (asked `read_uncommitted`), then one reading client.
struct PartitionReader: Sendable {
    let configuration: KafkaConfiguration
    let isolationLevel: IsolationLevel
    let maxBufferedBytes: Int
    let logger: Logger

    /// Which partitions to read: one by number, or a choice made from the topic's partition count.
    enum Selection: Sendable {
        case one(Int32)
        case fromCount(@Sendable (Int32) -> [Int32])
    }

    /// One partition's extent at the start of the read: where it begins and its high watermark.
    struct Extent: Sendable {
        var start: Int64
        var end: Int64
    }

    func read(
        topic: String, timeout: Duration, partitions: Selection
    ) async throws(KafkaError) -> (partitionCount: Int32, messages: [ConsumerMessage]) {
        let collected = Collected()
        let (count, _) = try await stream(
            topic: topic, timeout: timeout, partitions: partitions, batchBytes: 1 << 20,
            onBatch: { collected.messages += $0 })
        return (count, collected.messages)
    }

    /// Every batch kept, for the reads that return an array.
    private final class Collected: @unchecked Sendable {
        // @unchecked: appended to only on the reading thread, read only after the read has returned.
        var messages: [ConsumerMessage] = []
    }

    func stream(
        topic: String, timeout: Duration, partitions: Selection, batchBytes: Int,
        onBatch: @escaping @Sendable ([ConsumerMessage]) -> Void
    ) async throws(KafkaError) -> (partitionCount: Int32, ends: [Int32: Int64]) {
        let deadline = ContinuousClock.now + timeout
        let cancelled = CancellationFlag()
        let result = await withTaskCancellationHandler {
            () async -> Result<(partitionCount: Int32, ends: [Int32: Int64]), KafkaError> in
            do throws(KafkaError) {
                let (count, extents) = try await withClient(.readUncommitted) { rk in
                    Self.extents(rk, topic: topic, partitions: partitions, timeout: timeout)
                }
                if extents.isEmpty { return .success((count, [:])) }
                try await withClient(isolationLevel) { rk in
                    Self.readToEnd(
                        rk, topic: topic, extents: extents, deadline: deadline, timeout: timeout, cancelled: cancelled,
                        batchBytes: batchBytes, onBatch: onBatch)
                }
                return .success((count, extents.mapValues(\.end)))
            } catch {
                return .failure(error)
            }
        } onCancel: {
            cancelled.set()
        }
        return try result.get()
    }

    /// A consumer handle that never joins a group, for the blocking `body`; destroyed afterwards.
    private func withClient<T: Sendable>(
        _ isolation: IsolationLevel, _ body: @escaping @Sendable (RDKafkaHandle) -> Result<T, KafkaError>
    ) async throws(KafkaError) -> T {
        let client = try makeClient(isolation)
        let result: Result<T, KafkaError>
        do {
            result = .success(try await client.blocking("readPartitionToEnd", body))
        } catch {
            result = .failure(error)
        }
        await client.destroy(timeout: .seconds(10), pollThread: nil)
        return try result.get()
    }

    /// A consumer handle that never joins a group or commits; whoever polls it is its only poller.
    func makeClient(_ isolation: IsolationLevel) throws(KafkaError) -> RDKafkaClient {
        var properties = configuration.librdkafkaProperties()
        properties.append(contentsOf: [
            // librdkafka 2.0 refuses assign() without a group id; this one never joins (no subscribe) or commits.
            ("group.id", "activity-sync-reader-\(UInt64.random(in: 0...UInt64.max))"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", isolation.rawValue),
            ("queued.max.messages.kbytes", String(max(1024, maxBufferedBytes / 1024))),
            ("fetch.max.bytes", String(max(1 << 20, min(maxBufferedBytes, 50 << 20)))),
        ])
        properties.append(contentsOf: configuration.properties.sorted { $0.key < $1.key })
        let client = try RDKafkaClient(
            kind: .consumer, properties: properties,
            context: ClientContext(logger: logger, statisticsHandler: configuration.statisticsHandler), callbacks: [])
        client.handle.serveEventsFromConsumerQueue()
        return client
    }

    /// The topic's partition count (the named partition + 1 for `.one`, which asks for no metadata) and the extent
    /// of each wanted partition that has records.
    private static func extents(
        _ rk: RDKafkaHandle, topic: String, partitions selection: Selection, timeout: Duration
    ) -> Result<(Int32, [Int32: Extent]), KafkaError> {
        let count: Int32
        let wanted: Set<Int32>
        switch selection {
        case .one(let partition):
            count = partition + 1
            wanted = [partition]
        case .fromCount(let choose):
            switch rk.topicPartitionCounts(timeout: timeout) {
            case .success(let topics): count = Int32(topics[topic] ?? 0)
            case .failure(let error): return .failure(error)
            }
            wanted = Set(choose(count).filter { (0..<count).contains($0) })
        }
        var extents: [Int32: Extent] = [:]
        for partition in wanted {
            switch rk.queryWatermarks(topic: topic, partition: partition, timeout: timeout) {
            case .success(let watermarks):
                if watermarks.high > watermarks.low {
                    extents[partition] = Extent(start: watermarks.low, end: watermarks.high)
                }
            case .failure(let error): return .failure(error)
            }
        }
        return .success((count, extents))
    }

    /// The blocking read; this thread is the handle's only poller.
    ///
    /// Each partition is assigned at the low watermark just queried rather than at `OFFSET_BEGINNING`: the same
    /// offset (for a compacted topic, the log start), but librdkafka resolves `OFFSET_BEGINNING` with a lookup
    /// before the first fetch, which took ~0.5 s per read on the embedded cluster. Should retention move the low
    /// watermark in between, the fetch is out of range and `auto.offset.reset=earliest` applies.
    static func readToEnd(
        _ rk: RDKafkaHandle, topic: String, extents: [Int32: Extent], deadline: ContinuousClock.Instant,
        timeout: Duration, cancelled: CancellationFlag?, batchBytes: Int, onBatch: ([ConsumerMessage]) -> Void
    ) -> Result<Void, KafkaError> {
        let err = rk.assign(
            extents.keys.sorted().map { TopicPartitionOffset(topic: topic, partition: $0, offset: extents[$0]!.start) })
        if err != .noError {
            return .failure(.from(err, context: "assigning \(topic)\(extents.keys.sorted())"))
        }
        var batch: [ConsumerMessage] = []
        var pendingBytes = 0
        var positions: [Int32: Int64] = [:]
        var unfinished = Set(extents.keys)
        while ContinuousClock.now < deadline {
            if cancelled?.isSet == true { return .failure(.closed("reading \(topic): cancelled")) }
            guard let message = rk.consumerPoll(timeoutMilliseconds: 100) else { continue }
            defer { message.destroy() }
            let partition = message.partition
            switch message.code {
            case .noError:
                if let end = extents[partition]?.end, message.offset < end {
                    let record = ConsumerMessage(message)
                    pendingBytes += (record.key?.count ?? 0) + (record.value?.count ?? 0) + 64
                    batch.append(record)
                    if pendingBytes >= batchBytes {
                        onBatch(batch)
                        batch.removeAll(keepingCapacity: true)
                        pendingBytes = 0
                    }
                }
                positions[partition] = message.offset + 1
            case .partitionEOF:
                // The offset of an EOF is the fetch position: past skipped aborted records and commit markers. With
                // read_committed an EOF short of the high watermark is the last stable offset: keep waiting.
                positions[partition] = max(positions[partition] ?? 0, message.offset)
            case let err:
                if err == .fatal || err == .topicAuthorizationFailed || err == .unknownPartition || err == .unknownTopic
                {
                    return .failure(.from(err, context: "reading \(topic)[\(partition)]"))
                }
            }
            if let end = extents[partition]?.end, (positions[partition] ?? 0) >= end { unfinished.remove(partition) }
            if unfinished.isEmpty {
                if !batch.isEmpty { onBatch(batch) }
                return .success(())
            }
        }
        let late = unfinished.sorted().map { "[\($0)] to offset \(extents[$0]!.end) (reached \(positions[$0] ?? 0))" }
        return .failure(
            .timedOut(
                "reading \(topic)\(late.joined(separator: ", ")); a transaction below it may still be open",
                after: timeout))
    }
}

/// Set when the reading task is cancelled; the blocking read checks it between polls.
final class CancellationFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}

/// Runs `read` for each of `partitions`, at most `concurrency` at a time, and returns each partition's result.
///
/// The one fan-out of partition reads: a worker's restore (state and accounts of its new partitions), a scheduler's
/// load (accounts and statuses). Each read is its own client and mostly waits on the network, so a few at once fill
/// the link without one client per partition. `read` does its own retrying (within its own deadline); the first
/// error it throws cancels the others and is thrown here.
public func readEachPartition<T: Sendable>(
    _ partitions: [Int32], concurrency: Int, _ read: @escaping @Sendable (Int32) async throws -> T
) async throws -> [(partition: Int32, result: T)] {
    try await withThrowingTaskGroup(of: (Int32, T).self) { group in
        var pending = partitions.sorted()[...]
        var results: [(partition: Int32, result: T)] = []
        func startNext(_ group: inout ThrowingTaskGroup<(Int32, T), any Error>) {
            guard let partition = pending.popFirst() else { return }
            group.addTask { (partition, try await read(partition)) }
        }
        for _ in 0..<max(1, concurrency) { startNext(&group) }
        while let (partition, result) = try await group.next() {
            results.append((partition, result))
            startNext(&group)
        }
        return results
    }
}
