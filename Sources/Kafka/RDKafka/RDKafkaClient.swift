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

    /// The error callback's answer to a fatal error: logged with its underlying code and, for a consumer, handed to
    /// the application as its last event. Fatal whatever the underlying code: that is what makes FENCED_INSTANCE_ID
    /// here "another process has this group.instance.id", unlike the abortable one a transactional offset commit
    /// can get.
    static func reportFatalError(_ context: ClientContext, handle: RDKafkaHandle) {
        let (underlying, reason) = handle.fatalError()
        let metadata: Logger.Metadata = [
            "kafka.error": "\(RDKafkaCode.fatal.name)", "kafka.fatal": "\(underlying.name)",
        ]
        context.logger.error("librdkafka fatal error: \(reason)", metadata: metadata)
        var error = KafkaError.from(underlying, context: "the consumer failed for good: \(reason)")
        error.isFatal = true
        error.isRetriable = false
        context.consumer?.channel.push(.fatal(error))
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

/// A librdkafka client handle (`rd_kafka_t *`) as the rest of the module holds it: the typed operations are its
/// methods (RDKafkaConsumer.swift, RDKafkaProducer.swift, RDKafkaAdmin.swift), so nothing outside this folder
/// calls librdkafka.
// @unchecked Sendable: librdkafka documents its client handles as thread-safe; the pointer itself is immutable.
struct RDKafkaHandle: @unchecked Sendable {
    let pointer: OpaquePointer

    /// Serves this client's events (delivery reports, errors, statistics); waits at most `timeoutMilliseconds`.
    func poll(timeoutMilliseconds: Int32) {
        rd_kafka_poll(pointer, timeoutMilliseconds)
    }
}

/// One librdkafka client handle: creation from validated properties, the C callbacks, bounded destruction.
final class RDKafkaClient: Sendable {
    /// What librdkafka creates: an admin client or a mock cluster's owner is a producer handle.
    enum Kind {
        case producer
        case consumer

        var cValue: rd_kafka_type_t { self == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER }
    }

    let handle: RDKafkaHandle
    let context: ClientContext
    private let retainedContext: UnsafeHandleBox
    private let destroyed = Atomic<Bool>(false)
    private let gate = HandleGate()

    var logger: Logger { context.logger }

    /// Creates the handle; every property goes through `rd_kafka_conf_set` so librdkafka's own message reports an
    /// unknown or invalid one.
    init(
        kind: Kind, properties: [(String, String)], context: ClientContext, callbacks: ClientCallbacks
    ) throws(KafkaError) {
        let conf = try Self.makeConf(properties)
        Self.setDiagnosticCallbacks(conf)
        if callbacks.contains(.deliveryReports) { Self.setDeliveryReportCallback(conf) }
        if callbacks.contains(.rebalance) { Self.setRebalanceCallbacks(conf) }
        let retained = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, retained.toOpaque())
        self.handle = RDKafkaHandle(pointer: try Self.newHandle(kind, conf, retainedContext: retained))
        self.context = context
        self.retainedContext = UnsafeHandleBox(retained)
    }

    /// Logs, errors and statistics, which every client has: librdkafka's log lines go to the client's logger with
    /// their facility; a fatal error is logged with its underlying code and, for a consumer, handed to the
    /// application as its last event (this runs on its poll thread); statistics are kept for `latestStatistics`.
    private static func setDiagnosticCallbacks(_ conf: OpaquePointer) {
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
            let code = RDKafkaCode(rawValue: err)
            if code == .fatal, let rk {
                ClientContext.reportFatalError(context, handle: RDKafkaHandle(pointer: rk))
            } else {
                let reasonText = reason.map { String(cString: $0) } ?? ""
                context.logger.warning(
                    "librdkafka error: \(reasonText)", metadata: ["kafka.error": "\(code.name)"])
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
    }

    /// A producer's delivery reports, served on its poll thread, complete the record's slot in its `DeliveryBatch`
    /// (the record's opaque). Only scalars cross: this runs once per record at full produce rate.
    private static func setDeliveryReportCallback(_ conf: OpaquePointer) {
        rd_kafka_conf_set_dr_msg_cb(conf) { rk, message, _ in
            guard let message, let opaque = message.pointee._private else { return }
            DeliveryBatch.complete(
                opaque: opaque, partition: message.pointee.partition, offset: message.pointee.offset,
                code: RDKafkaCode(message.pointee.err), handle: rk.map { RDKafkaHandle(pointer: $0) })
        }
    }

    /// A consumer's rebalances go to its `ConsumerPollState` (on the polling thread); failed background commits
    /// are only logged, because a manual commit reports its own result.
    private static func setRebalanceCallbacks(_ conf: OpaquePointer) {
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            guard let rk, let consumer = ClientContext.from(opaque)?.consumer else { return }
            consumer.rebalance(
                RDKafkaRebalance(handle: RDKafkaHandle(pointer: rk), code: RDKafkaCode(err), list: partitions))
        }
        rd_kafka_conf_set_offset_commit_cb(conf) { _, err, offsets, opaque in
            guard err != RD_KAFKA_RESP_ERR_NO_ERROR, err != RD_KAFKA_RESP_ERR__NO_OFFSET,
                let context = ClientContext.from(opaque)
            else { return }
            context.logger.warning(
                "offset commit failed: \(RDKafkaCode(err).text)",
                metadata: ["kafka.offsets": "\(RDKafkaTopicPartitionList.read(offsets))"])
        }
    }

    /// `rd_kafka_new` takes the configuration over on success; on failure the configuration and the context's +1
    /// are released here, since no handle will ever release them.
    private static func newHandle(
        _ kind: Kind, _ conf: OpaquePointer, retainedContext: Unmanaged<ClientContext>
    ) throws(KafkaError) -> OpaquePointer {
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(kind.cValue, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            retainedContext.release()
            throw KafkaError(
                code: .clientCreation,
                message: "librdkafka refused the configuration: \(cString(errstr))")
        }
        return rk
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
        beforeDestroy: @escaping @Sendable (RDKafkaHandle) -> Void = { _ in }
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
            beforeDestroy(handle)
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
    func destroyDetached(pollThread: PollThread?, beforeDestroy: @escaping @Sendable (RDKafkaHandle) -> Void = { _ in })
    {
        Task.detached { [self] in
            await self.destroy(timeout: .seconds(30), pollThread: pollThread, beforeDestroy: beforeDestroy)
        }
    }

    var isDestroyed: Bool { destroyed.load(ordering: .acquiring) }

    /// Runs a short, non-blocking librdkafka call, guaranteeing the handle is not destroyed meanwhile.
    func withHandle<T>(_ what: String, _ body: (RDKafkaHandle) throws(KafkaError) -> T) throws(KafkaError) -> T {
        guard gate.enter() else { throw KafkaError.closed(what) }
        defer { gate.leave() }
        return try body(handle)
    }

    /// Runs a blocking librdkafka call off the cooperative pool, guaranteeing the handle is not destroyed
    /// meanwhile.
    func blocking<T: Sendable>(
        _ what: String, _ body: @escaping @Sendable (RDKafkaHandle) -> Result<T, KafkaError>
    ) async throws(KafkaError) -> T {
        let handle = self.handle
        let gate = self.gate
        let result: Result<T, KafkaError> = await runBlocking {
            guard gate.enter() else { return .failure(KafkaError.closed(what)) }
            defer { gate.leave() }
            return body(handle)
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
