import CRdKafka

/// librdkafka's mock cluster (`rd_kafka_mock_cluster_t *`), owned by the client handle it was created with.
// @unchecked Sendable: librdkafka locks the mock cluster's state itself; the pointer itself is immutable.
struct RDKafkaMockCluster: @unchecked Sendable {
    private let pointer: OpaquePointer

    /// The mock cluster of a client created with `test.mock.num.brokers`, `nil` if it has none.
    init?(_ handle: RDKafkaHandle) {
        guard let pointer = rd_kafka_handle_mock_cluster(handle.pointer) else { return nil }
        self.pointer = pointer
    }

    /// `host:port,…` of the mock brokers.
    var bootstrapServers: String { String(cString: rd_kafka_mock_cluster_bootstraps(pointer)) }

    func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32) -> RDKafkaCode {
        RDKafkaCode(rd_kafka_mock_topic_create(pointer, name, partitions, replicationFactor))
    }

    func setBrokerDown(_ id: Int32) -> RDKafkaCode { RDKafkaCode(rd_kafka_mock_broker_set_down(pointer, id)) }

    func setBrokerUp(_ id: Int32) -> RDKafkaCode { RDKafkaCode(rd_kafka_mock_broker_set_up(pointer, id)) }

    func setRoundTripTime(broker: Int32, milliseconds: Int32) -> RDKafkaCode {
        RDKafkaCode(rd_kafka_mock_broker_set_rtt(pointer, broker, milliseconds))
    }

    /// The next `codes.count` requests with this API key fail with these codes, in order.
    func pushRequestErrors(apiKey: Int16, codes: [Int32]) {
        let codes = codes.map { rd_kafka_resp_err_t($0) }
        codes.withUnsafeBufferPointer { buffer in
            rd_kafka_mock_push_request_errors_array(pointer, apiKey, buffer.count, buffer.baseAddress)
        }
    }

    /// The next response of this API key from one broker is delayed by `milliseconds` and fails with `code` (0 for
    /// none), through the shim: librdkafka's function takes its (error, delay) pairs as C varargs.
    func pushRequestError(broker: Int32, apiKey: Int16, code: Int32, delayMilliseconds: Int32) -> RDKafkaCode {
        RDKafkaCode(
            activity_sync_mock_push_request_error_rtt(
                pointer, broker, apiKey, rd_kafka_resp_err_t(code), delayMilliseconds))
    }

    func clearRequestErrors(apiKey: Int16) {
        rd_kafka_mock_clear_request_errors(pointer, apiKey)
    }
}
