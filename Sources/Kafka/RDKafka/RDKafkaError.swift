import CRdKafka

/// librdkafka's response code (`rd_kafka_resp_err_t`) as a Swift value.
///
/// The rest of the module decides by these named codes and never sees the C enum; the names and texts come from
/// librdkafka itself (`rd_kafka_err2name`, `rd_kafka_err2str`) so they match its logs.
struct RDKafkaCode: Hashable, Sendable {
    let rawValue: Int32

    init(rawValue: Int32) { self.rawValue = rawValue }
    init(_ code: rd_kafka_resp_err_t) { rawValue = code.rawValue }

    var cValue: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue) }

    /// The symbolic name, e.g. `PRODUCER_FENCED` or `_TIMED_OUT`.
    var name: String { String(cString: rd_kafka_err2name(cValue)) }
    /// librdkafka's human-readable description.
    var text: String { String(cString: rd_kafka_err2str(cValue)) }

    // Local (client-side) codes, librdkafka's negative ones.
    static let noError = RDKafkaCode(RD_KAFKA_RESP_ERR_NO_ERROR)
    static let fatal = RDKafkaCode(RD_KAFKA_RESP_ERR__FATAL)
    static let timedOut = RDKafkaCode(RD_KAFKA_RESP_ERR__TIMED_OUT)
    static let messageTimedOut = RDKafkaCode(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
    static let transport = RDKafkaCode(RD_KAFKA_RESP_ERR__TRANSPORT)
    static let allBrokersDown = RDKafkaCode(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    static let queueFull = RDKafkaCode(RD_KAFKA_RESP_ERR__QUEUE_FULL)
    static let partitionEOF = RDKafkaCode(RD_KAFKA_RESP_ERR__PARTITION_EOF)
    static let partial = RDKafkaCode(RD_KAFKA_RESP_ERR__PARTIAL)
    static let noOffset = RDKafkaCode(RD_KAFKA_RESP_ERR__NO_OFFSET)
    static let fenced = RDKafkaCode(RD_KAFKA_RESP_ERR__FENCED)
    static let assignmentLost = RDKafkaCode(RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST)
    static let assignPartitions = RDKafkaCode(RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
    static let revokePartitions = RDKafkaCode(RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
    static let unknownPartition = RDKafkaCode(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
    static let unknownTopic = RDKafkaCode(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)

    // Broker codes.
    static let requestTimedOut = RDKafkaCode(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)
    static let notLeaderForPartition = RDKafkaCode(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION)
    static let leaderNotAvailable = RDKafkaCode(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
    static let unknownTopicOrPartition = RDKafkaCode(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    static let fencedLeaderEpoch = RDKafkaCode(RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH)
    static let unknownLeaderEpoch = RDKafkaCode(RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH)
    static let coordinatorLoadInProgress = RDKafkaCode(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS)
    static let coordinatorNotAvailable = RDKafkaCode(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE)
    static let notCoordinator = RDKafkaCode(RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
    static let producerFenced = RDKafkaCode(RD_KAFKA_RESP_ERR_PRODUCER_FENCED)
    static let invalidProducerEpoch = RDKafkaCode(RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH)
    static let invalidTransactionState = RDKafkaCode(RD_KAFKA_RESP_ERR_INVALID_TXN_STATE)
    static let fencedInstanceId = RDKafkaCode(RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID)
    static let illegalGeneration = RDKafkaCode(RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)
    static let unknownMemberId = RDKafkaCode(RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID)
    static let rebalanceInProgress = RDKafkaCode(RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS)
    static let messageSizeTooLarge = RDKafkaCode(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
    static let recordListTooLarge = RDKafkaCode(RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE)
    static let invalidRecord = RDKafkaCode(RD_KAFKA_RESP_ERR_INVALID_RECORD)
    static let invalidMessageSize = RDKafkaCode(RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE)
    static let invalidMessage = RDKafkaCode(RD_KAFKA_RESP_ERR_INVALID_MSG)
    static let topicAuthorizationFailed = RDKafkaCode(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
    static let topicAlreadyExists = RDKafkaCode(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
}

/// An `rd_kafka_error_t` copied out of librdkafka (which is then destroyed): its code, text and librdkafka's own
/// classification flags, which `KafkaError` keeps as they are.
struct RDKafkaError: Sendable {
    var code: RDKafkaCode
    var text: String
    var isRetriable: Bool
    var isFatal: Bool
    var requiresAbort: Bool

    /// Copies the error out and destroys librdkafka's object.
    init(consuming error: OpaquePointer) {
        defer { rd_kafka_error_destroy(error) }
        text = String(cString: rd_kafka_error_string(error))
        code = RDKafkaCode(rd_kafka_error_code(error))
        isRetriable = rd_kafka_error_is_retriable(error) != 0
        isFatal = rd_kafka_error_is_fatal(error) != 0
        requiresAbort = rd_kafka_error_txn_requires_abort(error) != 0
    }

    /// `nil` when librdkafka returned no error object (success).
    init?(consuming error: OpaquePointer?) {
        guard let error else { return nil }
        self.init(consuming: error)
    }
}

extension RDKafkaHandle {
    /// The client's fatal error, if one was raised (`RDKafkaCode.noError` otherwise), with librdkafka's reason.
    func fatalError() -> (code: RDKafkaCode, reason: String) {
        var buffer = [CChar](repeating: 0, count: 512)
        let code = rd_kafka_fatal_error(pointer, &buffer, buffer.count)
        return (RDKafkaCode(code), cString(buffer))
    }
}

/// How a librdkafka call failed: some calls return a bare response code, others an error object with flags.
enum RDKafkaFailure: Sendable {
    case code(RDKafkaCode)
    case error(RDKafkaError)
}
