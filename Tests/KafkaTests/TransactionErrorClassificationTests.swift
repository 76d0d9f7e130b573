import Kafka
import Testing

/// librdkafka's flags decide what a transactional error means; the code only refines it. The same
/// `FENCED_INSTANCE_ID` is a stale offset commit of this process when abortable, and a second process with the
/// same `group.instance.id` only when fatal.
@Suite("Transactional error classification")
struct TransactionErrorClassificationTests {
    /// librdkafka's `rd_kafka_resp_err_t` values.
    enum Code {
        static let fencedInstanceId: Int32 = 82
        static let illegalGeneration: Int32 = 22
        static let unknownMemberId: Int32 = 25
        static let rebalanceInProgress: Int32 = 27
        static let producerFenced: Int32 = 90
        static let invalidProducerEpoch: Int32 = 47
        static let invalidTxnState: Int32 = 48
        static let localFenced: Int32 = -144
        static let messageTooLarge: Int32 = 10
        static let coordinatorNotAvailable: Int32 = 15
        static let timedOut: Int32 = -185
        static let transactionalIdAuthorizationFailed: Int32 = 53
    }

    typealias Recovery = KafkaError.TransactionRecovery

    @Test(
        "an abortable stale-membership error on send_offsets_to_transaction aborts the batch",
        arguments: [Code.fencedInstanceId, Code.illegalGeneration, Code.unknownMemberId, Code.rebalanceInProgress])
    func abortableStaleMembership(code: Int32) {
        let error = KafkaError.transaction(
            librdkafkaCode: code, message: "sendOffsetsToTransaction", requiresAbort: true)
        #expect(error.transactionRecovery == .abortStaleMembership)
        #expect(!error.isFenced, "nothing else has the id: \(error)")
    }

    @Test("a fatal FENCED_INSTANCE_ID is another process with this group.instance.id")
    func fatalFencedInstanceId() {
        let error = KafkaError.transaction(librdkafkaCode: Code.fencedInstanceId, message: "consumer", isFatal: true)
        #expect(error.transactionRecovery == .fenced)
        #expect(error.isFenced)
    }

    @Test(
        "a fatal fencing code stops for good as fenced",
        arguments: [Code.producerFenced, Code.invalidProducerEpoch, Code.localFenced])
    func fatalFencing(code: Int32) {
        let error = KafkaError.transaction(librdkafkaCode: code, message: "commitTransaction", isFatal: true)
        #expect(error.transactionRecovery == .fenced)
        #expect(error.isFenced)
        #expect(error.isProducerEpochRejected)
    }

    @Test(
        "fatal and abortable together: fatal wins (the producer cannot abort any more)",
        arguments: [Code.fencedInstanceId, Code.illegalGeneration, Code.producerFenced])
    func fatalWinsOverAbort(code: Int32) {
        let recovery = KafkaError.transactionRecovery(
            librdkafkaCode: code, isRetriable: false, requiresAbort: true, isFatal: true)
        #expect(recovery == (code == Code.illegalGeneration ? .fatal : .fenced))
    }

    @Test("a fatal error that is not fencing means the producer broke")
    func fatalNotFencing() {
        for code in [Code.transactionalIdAuthorizationFailed, Code.invalidTxnState] {
            let error = KafkaError.transaction(librdkafkaCode: code, message: "x", isFatal: true)
            #expect(error.transactionRecovery == .fatal, "\(error)")
            #expect(!error.isFenced)
        }
    }

    @Test("retriable: the same step is called again; abortable otherwise")
    func retriableAndPlainAbort() {
        for code in [Code.coordinatorNotAvailable, Code.timedOut] {
            let retriable = KafkaError.transaction(librdkafkaCode: code, message: "x", isRetriable: true)
            #expect(retriable.transactionRecovery == .resume)
        }
        // Retriable *and* abortable: the transaction is past saving, abort it.
        #expect(
            KafkaError.transactionRecovery(
                librdkafkaCode: Code.timedOut, isRetriable: true, requiresAbort: true, isFatal: false) == .abort)
        let tooLarge = KafkaError.transaction(librdkafkaCode: Code.messageTooLarge, message: "x", requiresAbort: true)
        #expect(tooLarge.transactionRecovery == .abortRecordRejected)
    }

    @Test(
        "a fencing code without librdkafka's fatal flag never fences",
        arguments: [Code.fencedInstanceId, Code.producerFenced, Code.invalidProducerEpoch])
    func codeWithoutFlagsDoesNotFence(code: Int32) {
        let error = KafkaError.transaction(librdkafkaCode: code, message: "bare code")
        #expect(!error.isFenced)
        #expect(error.transactionRecovery != .fenced)
        #expect(error.transactionRecovery != .fatal)
    }
}
