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
        self.librdkafkaName =
            librdkafkaCode == 0 ? "" : RDKafkaCode(rawValue: librdkafkaCode).name
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.requiresAbort = requiresAbort
    }

    /// A transactional call's error as librdkafka reports it: a code and librdkafka's flags. The client builds its
    /// own from `rd_kafka_error_t`; this one is for tests of how callers answer each combination.
    public static func transaction(
        librdkafkaCode: Int32, message: String, isRetriable: Bool = false, requiresAbort: Bool = false,
        isFatal: Bool = false
    ) -> KafkaError {
        KafkaError(
            code: .transaction, message: message, librdkafkaCode: librdkafkaCode, isRetriable: isRetriable,
            isFatal: isFatal, requiresAbort: requiresAbort)
    }

    /// Another process took this client's identity over: a producer with the same `transactional.id` (or this
    /// producer's epoch was bumped), or a consumer with the same `group.instance.id`. This client must stop for
    /// good. A fatal error that is *not* fencing means the client itself broke.
    ///
    /// Only a *fatal* error fences. The same codes also come back abortable — `FENCED_INSTANCE_ID` on a
    /// transactional offset commit sent with group metadata from before this consumer's own rejoin, after a broker
    /// restart — and then nothing else has the id: the transaction is aborted and the client goes on.
    public var isFenced: Bool { isFatal && Self.isFencingCode(librdkafkaCode) }

    /// The broker no longer accepts this producer's epoch or transaction state (`PRODUCER_FENCED`,
    /// `INVALID_PRODUCER_EPOCH`, `INVALID_TXN_STATE`, librdkafka's `__FENCED`). Either another producer with the
    /// same `transactional.id` took over, or the broker aborted the transaction itself because it stayed open past
    /// `transaction.timeout.ms` and bumped the epoch; only how long the transaction was open tells the two apart.
    public var isProducerEpochRejected: Bool {
        switch RDKafkaCode(rawValue: librdkafkaCode) {
        case .fenced, .producerFenced, .invalidProducerEpoch, .invalidTransactionState:
            return true
        default:
            return false
        }
    }

    /// The client's view of the partition's leader is out of date (`NOT_LEADER_FOR_PARTITION`, `LEADER_NOT_AVAILABLE`,
    /// `UNKNOWN_TOPIC_OR_PART`, a fenced or unknown leader epoch). librdkafka 2.0.2 can keep a stale leader for a
    /// watermark query after a broker restart moved it (seen on kfake: minutes of `NOT_LEADER_FOR_PARTITION`); a new
    /// client asks for fresh metadata.
    public var isStaleLeader: Bool {
        switch RDKafkaCode(rawValue: librdkafkaCode) {
        case .notLeaderForPartition, .leaderNotAvailable, .unknownTopicOrPartition, .fencedLeaderEpoch,
            .unknownLeaderEpoch:
            return true
        default:
            return false
        }
    }

    /// How a transactional producer answers this error; see
    /// ``transactionRecovery(librdkafkaCode:isRetriable:requiresAbort:isFatal:)``.
    public var transactionRecovery: TransactionRecovery {
        Self.transactionRecovery(
            librdkafkaCode: librdkafkaCode, isRetriable: isRetriable, requiresAbort: requiresAbort, isFatal: isFatal)
    }

    /// What a transactional producer does about an error of one of its calls.
    public enum TransactionRecovery: Sendable, Hashable {
        /// Call the same step again: the transaction is still in it (a timeout, a coordinator moving).
        case resume
        /// Abort the transaction; the same output may be written again in a new one.
        case abort
        /// Abort the transaction: the group coordinator refused its offsets because they carry the group metadata
        /// of a membership that is gone (a stale generation or member id, or a static member that has rejoined
        /// since). The batch's partitions were lost or reassigned; it must not be sent again under that metadata.
        case abortStaleMembership
        /// Abort the transaction: the cluster refused a record for what it is (too large, malformed). Sending the
        /// same record again fails the same way.
        case abortRecordRejected
        /// Stop for good: this producer's epoch is no longer the current one — another producer with the same
        /// `transactional.id` took over, or the broker bumped it when it aborted a transaction left open past
        /// `transaction.timeout.ms`.
        case fenced
        /// Stop for good: the producer broke (authorization, an unsupported broker, a fatal state).
        case fatal
    }

    /// Classifies a transactional call's error by librdkafka's own flags first (`rd_kafka_error_is_fatal`,
    /// `rd_kafka_error_txn_requires_abort`, `rd_kafka_error_is_retriable`), and by its code only within what they
    /// say.
    ///
    /// librdkafka decides per request what a code means: `FENCED_INSTANCE_ID` is fatal as a consumer's join or
    /// heartbeat answer (a second process has the id) and abortable as a `TxnOffsetCommit` answer (this process's
    /// own consumer rejoined after a broker restart and the offsets carry its old member id). A list of codes
    /// alone cannot tell the two apart; the flags can.
    ///
    /// - Parameters:
    ///   - librdkafkaCode: the `rd_kafka_resp_err_t` value.
    ///   - isRetriable: `rd_kafka_error_is_retriable`.
    ///   - requiresAbort: `rd_kafka_error_txn_requires_abort`.
    ///   - isFatal: `rd_kafka_error_is_fatal`, or the client's fatal error is set.
    /// - Returns: what to do next.
    public static func transactionRecovery(
        librdkafkaCode: Int32, isRetriable: Bool, requiresAbort: Bool, isFatal: Bool
    ) -> TransactionRecovery {
        if isFatal { return isFencingCode(librdkafkaCode) ? .fenced : .fatal }
        if requiresAbort {
            if isStaleMembershipCode(librdkafkaCode) { return .abortStaleMembership }
            if isRecordRejectedCode(librdkafkaCode) { return .abortRecordRejected }
            return .abort
        }
        if isRetriable { return .resume }
        // No flag: librdkafka gave a bare code (a delivery report, a local check). Fencing always raises the
        // client's fatal error, so none of these fences; the code only says what kind of abort it is.
        if isRecordRejectedCode(librdkafkaCode) { return .abortRecordRejected }
        if isStaleMembershipCode(librdkafkaCode) { return .abortStaleMembership }
        return .abort
    }

    private static func isFencingCode(_ code: Int32) -> Bool {
        switch RDKafkaCode(rawValue: code) {
        case .fenced, .producerFenced, .invalidProducerEpoch, .fencedInstanceId:
            return true
        default:
            return false
        }
    }

    private static func isStaleMembershipCode(_ code: Int32) -> Bool {
        switch RDKafkaCode(rawValue: code) {
        case .fencedInstanceId, .illegalGeneration, .unknownMemberId, .rebalanceInProgress, .assignmentLost:
            return true
        default:
            return false
        }
    }

    private static func isRecordRejectedCode(_ code: Int32) -> Bool {
        switch RDKafkaCode(rawValue: code) {
        case .messageSizeTooLarge, .recordListTooLarge, .invalidRecord, .invalidMessageSize, .invalidMessage:
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
    static func from(_ err: RDKafkaCode, code: Code = .librdkafka, context: String) -> KafkaError {
        let retriable: Bool
        switch err {
        case .timedOut, .requestTimedOut, .transport, .notLeaderForPartition, .leaderNotAvailable, .messageTimedOut,
            .coordinatorLoadInProgress, .coordinatorNotAvailable, .notCoordinator, .queueFull, .allBrokersDown:
            retriable = true
        default:
            retriable = false
        }
        return KafkaError(
            code: code, message: "\(context): \(err.text)", librdkafkaCode: err.rawValue, isRetriable: retriable,
            isFatal: err == .fatal)
    }

    /// Builds an error from an `rd_kafka_error_t` librdkafka returned; the flags are librdkafka's own.
    static func from(_ error: RDKafkaError, code: Code = .librdkafka, context: String) -> KafkaError {
        KafkaError(
            code: code, message: "\(context): \(error.text)", librdkafkaCode: error.code.rawValue,
            isRetriable: error.isRetriable, isFatal: error.isFatal, requiresAbort: error.requiresAbort)
    }

    /// Builds an error from whichever way a librdkafka call failed.
    static func from(_ failure: RDKafkaFailure, code: Code = .librdkafka, context: String) -> KafkaError {
        switch failure {
        case .code(let err): return .from(err, code: code, context: context)
        case .error(let error): return .from(error, code: code, context: context)
        }
    }

    static func timedOut(_ what: String, after timeout: Duration) -> KafkaError {
        KafkaError(
            code: .timedOut, message: "\(what) did not complete within \(timeout); the cluster may be unreachable",
            librdkafkaCode: RDKafkaCode.timedOut.rawValue, isRetriable: true)
    }

    static func closed(_ what: String) -> KafkaError {
        KafkaError(code: .closed, message: "\(what): the client is closed; create a new one")
    }
}
