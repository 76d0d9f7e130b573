import Kafka
import Testing

/// A watermark query answered "not the leader" after a broker restart moved the partition: the caller replaces the
/// client (librdkafka 2.0.2 kept asking the old leader for minutes on kfake). Other errors do not.
@Suite struct StaleLeaderTests {
    // NOT_LEADER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PART, leader epochs
    @Test(arguments: [Int32(6), 5, 3, 74, 75])
    func aStaleLeaderErrorSaysSo(code: Int32) {
        #expect(KafkaError.transaction(librdkafkaCode: code, message: "watermarks").isStaleLeader)
    }

    @Test(arguments: [Int32(-185), -195, 15, 0])  // _TIMED_OUT, _TRANSPORT, COORDINATOR_NOT_AVAILABLE, none
    func otherErrorsDoNot(code: Int32) {
        #expect(!KafkaError.transaction(librdkafkaCode: code, message: "watermarks").isStaleLeader)
    }
}
