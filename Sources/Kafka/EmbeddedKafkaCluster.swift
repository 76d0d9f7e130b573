public import Logging

/// librdkafka's in-process mock cluster: N brokers on loopback TCP ports, for tests, dev mode and benchmarks.
///
/// Other processes can connect to `bootstrapServers` like to a real cluster. The mock has no CreateTopics API
/// (use `createTopic`), no compaction, and `read_committed` does not hide aborted records.
public final class EmbeddedKafkaCluster: Sendable {
    private let client: RDKafkaClient
    private let cluster: RDKafkaMockCluster
    /// `host:port,…` of the mock brokers.
    public let bootstrapServers: String
    /// Broker ids are 1…brokers.
    public let brokers: Int

    public init(brokers: Int = 1, logger: Logger) throws(KafkaError) {
        // A handle with test.mock.num.brokers owns a mock cluster; we never produce with it.
        let client = try RDKafkaClient(
            kind: .producer, properties: [("test.mock.num.brokers", String(brokers))],
            context: ClientContext(logger: logger, statisticsHandler: nil), callbacks: [])
        guard let cluster = RDKafkaMockCluster(client.handle) else {
            throw KafkaError(code: .embeddedCluster, message: "librdkafka did not create a mock cluster")
        }
        self.client = client
        self.cluster = cluster
        self.bootstrapServers = cluster.bootstrapServers
        self.brokers = brokers
    }

    deinit {
        if !client.isDestroyed { client.destroyDetached(pollThread: nil) }
    }

    /// Creates a topic (replication factor at most `brokers`).
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        try client.withHandle("createTopic") { [cluster] (_) throws(KafkaError) in
            let err = cluster.createTopic(name, partitions: partitions, replicationFactor: replicationFactor)
            if err != .noError {
                throw KafkaError.from(err, code: .embeddedCluster, context: "creating topic \(name)")
            }
        }
    }

    /// Creates several topics with the same partition count (callers pass e.g. `TopicNames.all.map(\.name)`).
    public func createTopics(_ names: [String], partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        for name in names {
            try createTopic(name, partitions: partitions, replicationFactor: replicationFactor)
        }
    }

    /// Makes a broker unreachable (connections closed, new ones refused) until `setBrokerUp`.
    public func setBrokerDown(_ id: Int32) throws(KafkaError) {
        try mockCall("setting broker \(id) down") { $0.setBrokerDown(id) }
    }

    public func setBrokerUp(_ id: Int32) throws(KafkaError) {
        try mockCall("setting broker \(id) up") { $0.setBrokerUp(id) }
    }

    /// Adds latency to every response of a broker.
    public func setRoundTripTime(broker: Int32, _ rtt: Duration) throws(KafkaError) {
        try mockCall("setting the RTT of broker \(broker)") {
            $0.setRoundTripTime(broker: broker, milliseconds: Int32(rtt.timeoutMilliseconds))
        }
    }

    /// Makes the next `errors.count` requests with this API key fail with these error codes, in order
    /// (e.g. apiKey 26 EndTxn with 90 PRODUCER_FENCED; 0 Produce, 22 InitProducerId, 25 AddOffsetsToTxn,
    /// 28 TxnOffsetCommit).
    public func pushRequestErrors(apiKey: Int16, errors: [Int32]) throws(KafkaError) {
        try client.withHandle("pushRequestErrors") { [cluster] (_) throws(KafkaError) in
            cluster.pushRequestErrors(apiKey: apiKey, codes: errors)
        }
    }

    /// Delays the next `count` responses of this API key from one broker by `delay`, each failing with `error`
    /// (0 for none) — a slow EndTxn, say, to hold a transaction open across a rebalance.
    public func delayRequests(
        broker: Int32 = 1, apiKey: Int16, count: Int = 1, by delay: Duration, error: Int32 = 0
    ) throws(KafkaError) {
        for _ in 0..<count {
            try mockCall("delaying requests \(apiKey) of broker \(broker)") {
                $0.pushRequestError(
                    broker: broker, apiKey: apiKey, code: error, delayMilliseconds: Int32(delay.timeoutMilliseconds))
            }
        }
    }

    /// Forgets errors pushed for this API key that were not consumed yet.
    public func clearRequestErrors(apiKey: Int16) throws(KafkaError) {
        try client.withHandle("clearRequestErrors") { [cluster] (_) throws(KafkaError) in
            cluster.clearRequestErrors(apiKey: apiKey)
        }
    }

    private func mockCall(_ what: String, _ body: (RDKafkaMockCluster) -> RDKafkaCode) throws(KafkaError) {
        try client.withHandle(what) { [cluster] (_) throws(KafkaError) in
            let err = body(cluster)
            if err != .noError {
                throw KafkaError.from(err, code: .embeddedCluster, context: what)
            }
        }
    }

    /// Stops the brokers. Clients still connected see the cluster disappear.
    public func close() async {
        await client.destroy(timeout: .seconds(10), pollThread: nil)
    }
}
