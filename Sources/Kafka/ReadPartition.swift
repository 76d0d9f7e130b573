import CRdKafka
import Synchronization
public import Logging

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
            type: RD_KAFKA_CONSUMER, properties: properties,
            context: ClientContext(logger: logger, statisticsHandler: configuration.statisticsHandler), callbacks: [])
        rd_kafka_poll_set_consumer(client.pointer)
        return client
    }

    let deadline = ContinuousClock.now + timeout
    let cancelled = CancellationFlag()
    let result = await withTaskCancellationHandler { () async -> Result<[ConsumerMessage], KafkaError> in
        do throws(KafkaError) {
            return .success(try await read())
        } catch {
            return .failure(error)
        }
    } onCancel: {
        cancelled.set()
    }
    return try result.get()

    func read() async throws(KafkaError) -> [ConsumerMessage] {
        // The end to read to is the high watermark. ListOffsets answers with the client's own isolation level, and a
        // read_committed "latest" is the last stable offset — the very place this read must not stop at — so the
        // watermark is asked for by a read_uncommitted client.
        let watermarks = try await withClient(makeClient(.readUncommitted)) { client async throws(KafkaError) in
            try await client.blocking("readPartitionToEnd.watermarks") { rk in
                queryWatermarks(rk, topic: topic, partition: partition, timeout: timeout)
            }
        }
        if watermarks.high <= watermarks.low { return [] }
        return try await withClient(makeClient(isolationLevel)) { client async throws(KafkaError) in
            try await client.blocking("readPartitionToEnd") { rk in
                readToEnd(
                    rk, topic: topic, partition: partition, end: watermarks.high, deadline: deadline, timeout: timeout,
                    cancelled: cancelled)
            }
        }
    }
}

/// Runs `body` with a client and destroys the client afterwards, whatever `body` did.
private func withClient<T: Sendable>(
    _ client: RDKafkaClient, _ body: (RDKafkaClient) async throws(KafkaError) -> T
) async throws(KafkaError) -> T {
    let result: Result<T, KafkaError>
    do {
        result = .success(try await body(client))
    } catch {
        result = .failure(error)
    }
    await client.destroy(timeout: .seconds(10), pollThread: nil)
    return try result.get()
}

/// Set when the reading task is cancelled; the blocking read checks it between polls.
private final class CancellationFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}

/// The blocking part of `readPartitionToEnd`; this thread is the handle's only poller.
private func readToEnd(
    _ rk: OpaquePointer, topic: String, partition: Int32, end: Int64, deadline: ContinuousClock.Instant,
    timeout: Duration, cancelled: CancellationFlag
) -> Result<[ConsumerMessage], KafkaError> {
    let list = makePartitionList([(topic, partition, TopicPartitionOffset.beginning)])
    defer { rd_kafka_topic_partition_list_destroy(list) }
    let err = rd_kafka_assign(rk, list)
    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
        return .failure(.from(err, context: "assigning \(topic)[\(partition)]"))
    }
    var messages: [ConsumerMessage] = []
    var position: Int64 = 0
    while ContinuousClock.now < deadline {
        if cancelled.isSet { return .failure(.closed("reading \(topic)[\(partition)]: cancelled")) }
        guard let message = rd_kafka_consumer_poll(rk, 100) else { continue }
        defer { rd_kafka_message_destroy(message) }
        switch message.pointee.err {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            if message.pointee.offset < end {
                messages.append(ConsumerMessage(message))
            }
            position = message.pointee.offset + 1
        case RD_KAFKA_RESP_ERR__PARTITION_EOF:
            // The offset of an EOF is the fetch position: past skipped aborted records and commit markers. With
            // read_committed an EOF short of the high watermark is the last stable offset: keep waiting.
            position = max(position, message.pointee.offset)
        case let err:
            if err == RD_KAFKA_RESP_ERR__FATAL || err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
                || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
            {
                return .failure(.from(err, context: "reading \(topic)[\(partition)]"))
            }
        }
        if position >= end { return .success(messages) }
    }
    return .failure(
        .timedOut(
            "reading \(topic)[\(partition)] to offset \(end) (reached \(position); a transaction below it "
                + "may still be open)", after: timeout))
}
