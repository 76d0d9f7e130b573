import CRdKafka
import Foundation
import Logging
import Synchronization

/// State the C callbacks reach through librdkafka's opaque pointer.
///
/// Retained for as long as the handle exists (released only after `rd_kafka_destroy` returned, never when the
/// handle is leaked), so a late callback can never see freed memory.
final class ClientContext: Sendable {
    let logger: Logger
    let statisticsHandler: (@Sendable (String) -> Void)?
    let latestStatistics = Mutex<String?>(nil)
    /// Set for consumers: the rebalance callback and the poll loop share it.
    let consumer: ConsumerPollState?

    init(logger: Logger, statisticsHandler: (@Sendable (String) -> Void)?, consumer: ConsumerPollState? = nil) {
        self.logger = logger
        self.statisticsHandler = statisticsHandler
        self.consumer = consumer
    }

    static func from(_ opaque: UnsafeMutableRawPointer?) -> ClientContext? {
        guard let opaque else { return nil }
        return Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

/// Which callbacks a client needs.
struct ClientCallbacks: OptionSet {
    let rawValue: Int
    static let deliveryReports = ClientCallbacks(rawValue: 1)
    static let rebalance = ClientCallbacks(rawValue: 2)
}

/// One librdkafka client handle: creation from validated properties, the C callbacks, bounded destruction.
final class RDKafkaClient: Sendable {
    let handle: UnsafeHandle
    let context: ClientContext
    private let retainedContext: UnsafeHandleBox
    private let destroyed = Atomic<Bool>(false)
    private let gate = HandleGate()

    var pointer: OpaquePointer { handle.pointer }
    var logger: Logger { context.logger }

    /// Creates the handle; every property goes through `rd_kafka_conf_set` so librdkafka's own message reports an
    /// unknown or invalid one.
    init(
        type: rd_kafka_type_t, properties: [(String, String)], context: ClientContext, callbacks: ClientCallbacks
    ) throws(KafkaError) {
        let conf = try Self.makeConf(properties)
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let rk, let context = ClientContext.from(rd_kafka_opaque(rk)) else { return }
            let text = message.map { String(cString: $0) } ?? ""
            let facilityText = facility.map { String(cString: $0) } ?? ""
            context.logger.log(
                level: Logger.Level(syslog: level), "\(text)",
                metadata: [
                    "kafka.facility": "\(facilityText)", "kafka.client": "\(String(cString: rd_kafka_name(rk)))",
                ],
                source: "librdkafka")
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
            guard let context = ClientContext.from(opaque) else { return }
            let reasonText = reason.map { String(cString: $0) } ?? ""
            var metadata: Logger.Metadata = [
                "kafka.error": "\(String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(err))))"
            ]
            if err == RD_KAFKA_RESP_ERR__FATAL.rawValue, let rk {
                var buffer = [CChar](repeating: 0, count: 512)
                let underlying = rd_kafka_fatal_error(rk, &buffer, buffer.count)
                metadata["kafka.fatal"] = "\(String(cString: rd_kafka_err2name(underlying)))"
                context.logger.error("librdkafka fatal error: \(cString(buffer))", metadata: metadata)
                // A consumer's application learns of it as its last event (this runs on its poll thread).
                // Fatal whatever the underlying code: that is what makes FENCED_INSTANCE_ID here "another process has
                // this group.instance.id", unlike the abortable one a transactional offset commit can get.
                var error = KafkaError.from(underlying, context: "the consumer failed for good: \(cString(buffer))")
                error.isFatal = true
                error.isRetriable = false
                context.consumer?.channel.push(.fatal(error))
            } else {
                context.logger.warning("librdkafka error: \(reasonText)", metadata: metadata)
            }
        }
        rd_kafka_conf_set_stats_cb(conf) { _, json, length, opaque in
            guard let context = ClientContext.from(opaque), let json else { return 0 }
            let text = String(
                decoding: UnsafeRawBufferPointer(start: json, count: length), as: UTF8.self)
            context.latestStatistics.withLock { $0 = text }
            context.statisticsHandler?(text)
            return 0  // librdkafka frees the JSON
        }
        if callbacks.contains(.deliveryReports) {
            rd_kafka_conf_set_dr_msg_cb(conf) { rk, message, _ in
                guard let message else { return }
                DeliveryBatch.complete(message, rk: rk)
            }
        }
        if callbacks.contains(.rebalance) {
            rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
                guard let rk, let consumer = ClientContext.from(opaque)?.consumer else { return }
                consumer.rebalance(UnsafeHandle(pointer: rk), err: err, partitions: partitions)
            }
            rd_kafka_conf_set_offset_commit_cb(conf) { _, err, offsets, opaque in
                guard err != RD_KAFKA_RESP_ERR_NO_ERROR, err != RD_KAFKA_RESP_ERR__NO_OFFSET,
                    let context = ClientContext.from(opaque)
                else { return }
                context.logger.warning(
                    "offset commit failed: \(String(cString: rd_kafka_err2str(err)))",
                    metadata: ["kafka.offsets": "\(readPartitionList(offsets))"])
            }
        }
        let retained = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, retained.toOpaque())

        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            retained.release()
            throw KafkaError(
                code: .clientCreation,
                message: "librdkafka refused the configuration: \(cString(errstr))")
        }
        self.handle = UnsafeHandle(pointer: rk)
        self.context = context
        self.retainedContext = UnsafeHandleBox(retained)
    }

    static func makeConf(_ properties: [(String, String)]) throws(KafkaError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var errstr = [CChar](repeating: 0, count: 512)
        for (name, value) in properties {
            let result = rd_kafka_conf_set(conf, name, value, &errstr, errstr.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                // Errors end up in logs: never echo the value of a credential (sasl.password, ssl.key.password…),
                // not even inside librdkafka's own text.
                let secret = ["password", "secret", "sasl.", "ssl.key", "token"].contains { name.contains($0) }
                let shown = secret ? "<redacted>" : value
                var reason = cString(errstr)
                if secret, !value.isEmpty { reason = reason.replacingOccurrences(of: value, with: "<redacted>") }
                throw KafkaError(
                    code: .invalidConfiguration, message: "invalid Kafka property \(name)=\(shown): \(reason)")
            }
        }
        return conf
    }

    /// The most recent statistics JSON, if `statistics.interval.ms` is set.
    var latestStatistics: String? { context.latestStatistics.withLock { $0 } }

    /// Destroys the handle on a thread of its own, waiting at most `timeout`; runs `beforeDestroy` first on the
    /// same thread. Returns false if the handle had to be leaked.
    @discardableResult
    func destroy(
        timeout: Duration, pollThread: PollThread?,
        beforeDestroy: @escaping @Sendable (OpaquePointer) -> Void = { _ in }
    ) async -> Bool {
        if destroyed.exchange(true, ordering: .acquiringAndReleasing) { return true }
        pollThread?.requestStop()
        let handle = self.handle
        let retainedContext = self.retainedContext
        let logger = self.logger
        let gate = self.gate
        let finished = await runOnOwnThread(name: "kafka-destroy", timeout: timeout) {
            // Destroying while another thread still uses the handle would be a use-after-free: leak instead.
            guard pollThread?.waitUntilExited(timeout: .seconds(5)) ?? true else { return false }
            guard gate.closeAndWait(timeout: .seconds(5)) else { return false }
            beforeDestroy(handle.pointer)
            rd_kafka_destroy(handle.pointer)
            retainedContext.release()
            return true
        }
        if finished != true {
            logger.error(
                "librdkafka did not finish closing within \(timeout); leaking the client handle instead of hanging",
                metadata: ["kafka.issue": "confluentinc/librdkafka#4674"])
            return false
        }
        return true
    }

    /// Best-effort destruction when the owner was dropped without `close`.
    func destroyDetached(pollThread: PollThread?, beforeDestroy: @escaping @Sendable (OpaquePointer) -> Void = { _ in })
    {
        Task.detached { [self] in
            await self.destroy(timeout: .seconds(30), pollThread: pollThread, beforeDestroy: beforeDestroy)
        }
    }

    var isDestroyed: Bool { destroyed.load(ordering: .acquiring) }

    /// Runs a short, non-blocking librdkafka call, guaranteeing the handle is not destroyed meanwhile.
    func withHandle<T>(_ what: String, _ body: (OpaquePointer) throws(KafkaError) -> T) throws(KafkaError) -> T {
        guard gate.enter() else { throw KafkaError.closed(what) }
        defer { gate.leave() }
        return try body(handle.pointer)
    }

    /// Runs a blocking librdkafka call off the cooperative pool, guaranteeing the handle is not destroyed
    /// meanwhile.
    func blocking<T: Sendable>(
        _ what: String, _ body: @escaping @Sendable (OpaquePointer) -> Result<T, KafkaError>
    ) async throws(KafkaError) -> T {
        let handle = self.handle
        let gate = self.gate
        let result: Result<T, KafkaError> = await runBlocking {
            guard gate.enter() else { return .failure(KafkaError.closed(what)) }
            defer { gate.leave() }
            return body(handle.pointer)
        }
        return try result.get()
    }
}

/// Counts calls in progress on a handle so destruction waits for them, and refuses new calls once closing.
// @unchecked Sendable: all state is guarded by `condition`.
final class HandleGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var closed = false
    private var active = 0

    func enter() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if closed { return false }
        active += 1
        return true
    }

    func leave() {
        condition.lock()
        active -= 1
        if active == 0 { condition.broadcast() }
        condition.unlock()
    }

    /// Refuses new calls and waits (blocking: off the cooperative pool only) for running ones to finish.
    func closeAndWait(timeout: Duration) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.wholeMilliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        closed = true
        while active > 0 {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }
}

/// Holds the +1 on the context that librdkafka's opaque pointer stands for.
// @unchecked Sendable: `release()` is called exactly once, after rd_kafka_destroy returned.
final class UnsafeHandleBox: @unchecked Sendable {
    private let unmanaged: Unmanaged<ClientContext>
    init(_ unmanaged: Unmanaged<ClientContext>) { self.unmanaged = unmanaged }
    func release() { unmanaged.release() }
}

/// A NUL-terminated C string in a buffer librdkafka filled.
func cString(_ buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

extension Logger.Level {
    init(syslog level: Int32) {
        switch level {
        case ...2: self = .critical
        case 3: self = .error
        case 4: self = .warning
        case 5: self = .notice
        case 6: self = .info
        default: self = .debug
        }
    }
}

// MARK: - Topic partition lists

/// Builds an `rd_kafka_topic_partition_list_t`; the caller destroys it.
func makePartitionList(_ entries: [(topic: String, partition: Int32, offset: Int64)]) -> UnsafeMutablePointer<
    rd_kafka_topic_partition_list_t
> {
    let list = rd_kafka_topic_partition_list_new(Int32(entries.count))!
    for entry in entries {
        let element = rd_kafka_topic_partition_list_add(list, entry.topic, entry.partition)!
        element.pointee.offset = entry.offset
    }
    return list
}

func makePartitionList(_ offsets: [TopicPartitionOffset]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    makePartitionList(offsets.map { ($0.topic, $0.partition, $0.offset) })
}

func makePartitionList(_ partitions: [TopicPartition]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    makePartitionList(partitions.map { ($0.topic, $0.partition, Int64(RD_KAFKA_OFFSET_INVALID)) })
}

func readPartitionList(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>?) -> [TopicPartitionOffset] {
    guard let list, let elements = list.pointee.elems else { return [] }
    return (0..<Int(list.pointee.cnt)).map { index in
        let element = elements[index]
        return TopicPartitionOffset(
            topic: String(cString: element.topic), partition: element.partition, offset: element.offset)
    }
}

// MARK: - Consumed messages

extension ConsumerMessage {
    /// Copies a fetched message out of librdkafka's memory.
    init(_ message: UnsafePointer<rd_kafka_message_t>) {
        let raw = message.pointee
        let topic = raw.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        let key: [UInt8]? =
            raw.key.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: raw.key_len)) }
        let value: [UInt8]? =
            raw.payload.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: raw.len)) }
        var headers: [KafkaHeader] = []
        var headerList: OpaquePointer?
        let mutableMessage = UnsafeMutablePointer(mutating: message)
        if rd_kafka_message_headers(mutableMessage, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
            let count = rd_kafka_header_cnt(headerList)
            headers.reserveCapacity(count)
            for index in 0..<count {
                var name: UnsafePointer<CChar>?
                var valuePointer: UnsafeRawPointer?
                var size = 0
                if rd_kafka_header_get_all(headerList, index, &name, &valuePointer, &size)
                    == RD_KAFKA_RESP_ERR_NO_ERROR, let name
                {
                    let headerValue = valuePointer.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) }
                    headers.append(KafkaHeader(key: String(cString: name), value: headerValue))
                }
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let milliseconds = rd_kafka_message_timestamp(message, &timestampType)
        let timestamp =
            milliseconds >= 0 ? Date(timeIntervalSince1970: Double(milliseconds) / 1000) : nil
        self.init(
            topic: topic, partition: raw.partition, offset: raw.offset, key: key, value: value, headers: headers,
            timestamp: timestamp)
    }
}

extension ConsumerGroupMetadata {
    /// Metadata for a group id alone (no member id or generation), for tools and tests that commit offsets for
    /// a group without being a member of it.
    public init(groupId: String) {
        let metadata = rd_kafka_consumer_group_metadata_new(groupId)!
        defer { rd_kafka_consumer_group_metadata_destroy(metadata) }
        self.init(serialized: Self.write(metadata))
    }

    static func write(_ metadata: OpaquePointer) -> [UInt8] {
        var buffer: UnsafeMutableRawPointer?
        var size = 0
        guard let error = rd_kafka_consumer_group_metadata_write(metadata, &buffer, &size) as OpaquePointer?
        else {
            defer { rd_kafka_mem_free(nil, buffer) }
            return buffer.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
        }
        rd_kafka_error_destroy(error)
        return []
    }

    /// Reconstructs librdkafka's object; the caller destroys it.
    func read() throws(KafkaError) -> OpaquePointer {
        var metadata: OpaquePointer?
        let error = serialized.withUnsafeBytes { bytes in
            rd_kafka_consumer_group_metadata_read(&metadata, bytes.baseAddress, bytes.count)
        }
        if let error {
            throw KafkaError.consuming(error, context: "reading consumer group metadata")
        }
        return metadata!
    }
}
