import CRdKafka

/// The one error type of the Kafka module.
///
/// Callers decide what to do from the classification flags, which come straight from librdkafka where it gives
/// them (`rd_kafka_error_t`): retry the same call (`isRetriable`), abort the current transaction and start over
/// (`requiresAbort`), or drop the client and create a new one (`isFatal`).
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is; compare with the static members (`error.code == .timedOut`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case invalidConfiguration
            case clientCreation
            case librdkafka
            case timedOut
            case closed
            case transaction
            case delivery
            case embeddedCluster
        }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// A configuration property is unknown or has an invalid value (librdkafka's message says which).
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// librdkafka refused to create the client (usually conflicting properties).
        public static let clientCreation = Code(.clientCreation)
        /// A librdkafka call failed; `librdkafkaCode` and `librdkafkaName` say how.
        public static let librdkafka = Code(.librdkafka)
        /// The operation did not complete within the given timeout.
        public static let timedOut = Code(.timedOut)
        /// The client was closed before or during the operation.
        public static let closed = Code(.closed)
        /// A transactional API call failed; see `isRetriable`, `requiresAbort`, `isFatal`.
        public static let transaction = Code(.transaction)
        /// A message could not be delivered (delivery report carried an error).
        public static let delivery = Code(.delivery)
        /// The embedded (mock) cluster refused an operation.
        public static let embeddedCluster = Code(.embeddedCluster)

        public var description: String { "\(backing)" }
    }

    public var code: Code
    /// librdkafka's `rd_kafka_resp_err_t` value (e.g. 90 for PRODUCER_FENCED), 0 when librdkafka gave none.
    public var librdkafkaCode: Int32
    /// librdkafka's symbolic name for `librdkafkaCode` (e.g. `PRODUCER_FENCED`), empty when there is none.
    public var librdkafkaName: String
    /// What went wrong, including librdkafka's own text where it gave one.
    public var message: String
    /// The same call may succeed if retried.
    public var isRetriable: Bool
    /// The client is unusable: close it and create a new one.
    public var isFatal: Bool
    /// The current transaction must be aborted (then it can be retried from the start).
    public var requiresAbort: Bool

    init(
        code: Code, message: String, librdkafkaCode: Int32 = 0, isRetriable: Bool = false, isFatal: Bool = false,
        requiresAbort: Bool = false
    ) {
        self.code = code
        self.message = message
        self.librdkafkaCode = librdkafkaCode
        self.librdkafkaName = librdkafkaCode == 0 ? "" : String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(librdkafkaCode)))
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.requiresAbort = requiresAbort
    }

    /// The consumer group is rebalancing or this member's generation is stale: an offset commit will succeed
    /// once the rebalance has handed out partitions again, for the partitions still owned. Not a broken cluster,
    /// so retrying it should not count toward giving up.
    public var isGroupRebalancing: Bool {
        switch rd_kafka_resp_err_t(librdkafkaCode) {
        case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
            RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID, RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST:
            return true
        default:
            return false
        }
    }

    /// Another producer with the same `transactional.id` took over (or this one's epoch is stale): this process
    /// must stop producing for good. A fatal error that is *not* fencing means the client itself broke.
    public var isFenced: Bool {
        switch rd_kafka_resp_err_t(librdkafkaCode) {
        case RD_KAFKA_RESP_ERR__FENCED, RD_KAFKA_RESP_ERR_PRODUCER_FENCED, RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
            RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
            return true
        default:
            return false
        }
    }

    /// The cluster (or librdkafka before sending) refused a record for what it is, not for the state of the
    /// cluster: too large, or malformed. Sending the same record again fails the same way, so the caller must
    /// change what it sends (dead-letter the job that made it) instead of retrying.
    public var isRecordRejected: Bool {
        switch rd_kafka_resp_err_t(librdkafkaCode) {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
            RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE, RD_KAFKA_RESP_ERR_INVALID_MSG:
            return true
        default:
            return false
        }
    }

    public var description: String {
        var text = "KafkaError(\(code)"
        if librdkafkaCode != 0 { text += ", \(librdkafkaName)" }
        text += "): \(message)"
        var flags: [String] = []
        if isRetriable { flags.append("retriable") }
        if requiresAbort { flags.append("abort the transaction and retry it") }
        if isFatal { flags.append("fatal: recreate the client") }
        if !flags.isEmpty { text += " [\(flags.joined(separator: ", "))]" }
        return text
    }

    /// Builds an error from a response code (delivery reports, mock cluster, metadata calls).
    static func from(_ err: rd_kafka_resp_err_t, code: Code = .librdkafka, context: String) -> KafkaError {
        let text = String(cString: rd_kafka_err2str(err))
        let retriable: Bool
        switch err {
        case RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
            retriable = true
        default:
            retriable = false
        }
        return KafkaError(
            code: code, message: "\(context): \(text)", librdkafkaCode: err.rawValue, isRetriable: retriable,
            isFatal: err == RD_KAFKA_RESP_ERR__FATAL)
    }

    /// Builds an error from an `rd_kafka_error_t` and destroys it; the flags are librdkafka's own.
    static func consuming(_ error: OpaquePointer, code: Code = .librdkafka, context: String) -> KafkaError {
        defer { rd_kafka_error_destroy(error) }
        let text = String(cString: rd_kafka_error_string(error))
        return KafkaError(
            code: code, message: "\(context): \(text)", librdkafkaCode: rd_kafka_error_code(error).rawValue,
            isRetriable: rd_kafka_error_is_retriable(error) != 0, isFatal: rd_kafka_error_is_fatal(error) != 0,
            requiresAbort: rd_kafka_error_txn_requires_abort(error) != 0)
    }

    static func timedOut(_ what: String, after timeout: Duration) -> KafkaError {
        KafkaError(
            code: .timedOut, message: "\(what) did not complete within \(timeout); the cluster may be unreachable",
            librdkafkaCode: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, isRetriable: true)
    }

    static func closed(_ what: String) -> KafkaError {
        KafkaError(code: .closed, message: "\(what): the client is closed; create a new one")
    }
}
