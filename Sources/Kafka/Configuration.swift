/// Settings every Kafka client shares.
///
/// The typed fields cover what activity-sync tunes; `properties` passes anything else straight to librdkafka
/// (see librdkafka's CONFIGURATION.md) and wins over the typed fields. librdkafka validates every property when
/// the client is created, so a typo fails fast with librdkafka's own message.
public struct KafkaConfiguration: Sendable {
    /// `host:port[,host:port…]` of one or more brokers.
    public var bootstrapServers: String
    /// Shows up in broker logs and quotas.
    public var clientId: String
    /// How often librdkafka emits its statistics JSON (`statistics.interval.ms`); `nil` turns statistics off.
    public var statisticsInterval: Duration?
    /// Receives each statistics JSON document (on the client's poll thread: return quickly).
    public var statisticsHandler: (@Sendable (String) -> Void)?
    /// Any librdkafka property, applied last.
    public var properties: [String: String]

    public init(
        bootstrapServers: String, clientId: String = "activity-sync", statisticsInterval: Duration? = nil,
        statisticsHandler: (@Sendable (String) -> Void)? = nil, properties: [String: String] = [:]
    ) {
        self.bootstrapServers = bootstrapServers
        self.clientId = clientId
        self.statisticsInterval = statisticsInterval
        self.statisticsHandler = statisticsHandler
        self.properties = properties
    }

    func librdkafkaProperties() -> [(String, String)] {
        var result: [(String, String)] = [
            ("bootstrap.servers", bootstrapServers),
            ("client.id", clientId),
        ]
        if let statisticsInterval {
            result.append(("statistics.interval.ms", String(statisticsInterval.wholeMilliseconds)))
        }
        return result
    }
}

/// Settings of a `KafkaProducer`.
public struct ProducerConfiguration: Sendable {
    public var kafka: KafkaConfiguration
    /// Idempotence (`enable.idempotence`) keeps retries from duplicating or reordering records; keep it on.
    public var idempotent: Bool
    /// `murmur2_random` is the Java client's partitioner, so keyed topics line up with any other producer.
    public var partitioner: String
    /// How long to wait for more records before sending a batch (`linger.ms`).
    public var linger: Duration
    /// Give up on a record after this long (`message.timeout.ms`); `nil` keeps librdkafka's default (300 s).
    public var messageTimeout: Duration?
    /// Records that may wait in the local queue (`queue.buffering.max.messages`); a full queue makes `send` wait.
    public var maxQueuedMessages: Int

    public init(
        kafka: KafkaConfiguration, idempotent: Bool = true, partitioner: String = "murmur2_random",
        linger: Duration = .milliseconds(5), messageTimeout: Duration? = nil, maxQueuedMessages: Int = 100_000
    ) {
        self.kafka = kafka
        self.idempotent = idempotent
        self.partitioner = partitioner
        self.linger = linger
        self.messageTimeout = messageTimeout
        self.maxQueuedMessages = maxQueuedMessages
    }

    func librdkafkaProperties() -> [(String, String)] {
        var result = kafka.librdkafkaProperties()
        result.append(("enable.idempotence", idempotent ? "true" : "false"))
        result.append(("partitioner", partitioner))
        result.append(("linger.ms", String(linger.wholeMilliseconds)))
        result.append(("queue.buffering.max.messages", String(maxQueuedMessages)))
        if let messageTimeout {
            result.append(("message.timeout.ms", String(messageTimeout.wholeMilliseconds)))
        }
        result.append(contentsOf: kafka.properties.sorted { $0.key < $1.key })
        return result
    }
}

/// Settings of a `KafkaTransactionalProducer` (always idempotent).
public struct TransactionalProducerConfiguration: Sendable {
    public var kafka: KafkaConfiguration
    /// Identifies the producer across restarts so the broker can fence an older instance (`transactional.id`).
    public var transactionalId: String
    public var partitioner: String
    /// The broker aborts a transaction left open longer than this (`transaction.timeout.ms`).
    public var transactionTimeout: Duration
    public var linger: Duration
    public var maxQueuedMessages: Int

    public init(
        kafka: KafkaConfiguration, transactionalId: String, partitioner: String = "murmur2_random",
        transactionTimeout: Duration = .seconds(60), linger: Duration = .milliseconds(5),
        maxQueuedMessages: Int = 100_000
    ) {
        self.kafka = kafka
        self.transactionalId = transactionalId
        self.partitioner = partitioner
        self.transactionTimeout = transactionTimeout
        self.linger = linger
        self.maxQueuedMessages = maxQueuedMessages
    }

    func librdkafkaProperties() -> [(String, String)] {
        var result = kafka.librdkafkaProperties()
        result.append(("transactional.id", transactionalId))
        result.append(("enable.idempotence", "true"))
        result.append(("partitioner", partitioner))
        result.append(("transaction.timeout.ms", String(transactionTimeout.wholeMilliseconds)))
        result.append(("linger.ms", String(linger.wholeMilliseconds)))
        result.append(("queue.buffering.max.messages", String(maxQueuedMessages)))
        result.append(contentsOf: kafka.properties.sorted { $0.key < $1.key })
        return result
    }
}

/// Settings of a `KafkaConsumer` (group member with manual commits).
public struct ConsumerConfiguration: Sendable {
    public var kafka: KafkaConfiguration
    public var groupId: String
    /// `readCommitted` hides records of open and aborted transactions.
    public var isolationLevel: IsolationLevel
    public var autoOffsetReset: AutoOffsetReset
    /// A member silent for this long is removed from the group (`session.timeout.ms`).
    public var sessionTimeout: Duration
    /// `heartbeat.interval.ms`; keep it well below `sessionTimeout`.
    public var heartbeatInterval: Duration
    /// `max.poll.interval.ms`: the longest the application may go without asking for the next event.
    public var maxPollInterval: Duration
    /// Eager assignor: `range` or `roundrobin`. (`cooperative-sticky` crashes librdkafka 2.0.2.)
    public var assignor: String
    /// The most messages handed out in one `.messages` event.
    public var maxBatchSize: Int
    /// How long a rebalance waits, after handing out `.revoked`/`.lost`, for the application to ask for the
    /// next event (its signal that it finished with the revoked partitions).
    public var revocationTimeout: Duration
    /// Static group membership (`group.instance.id`, KIP-345): a member that comes back under the same instance id
    /// within `sessionTimeout` gets its partitions back without a rebalance, and a restarted process no longer
    /// waits for its dead predecessor's session to expire. Must be unique per live member; nil for dynamic
    /// membership. Static members do not leave the group on close: their partitions move only after
    /// `sessionTimeout`.
    public var groupInstanceId: String?

    public init(
        kafka: KafkaConfiguration, groupId: String, isolationLevel: IsolationLevel = .readCommitted,
        autoOffsetReset: AutoOffsetReset = .earliest, sessionTimeout: Duration = .seconds(45),
        heartbeatInterval: Duration = .seconds(3), maxPollInterval: Duration = .seconds(300),
        assignor: String = "range", maxBatchSize: Int = 1000, revocationTimeout: Duration = .seconds(30)
    ) {
        self.kafka = kafka
        self.groupId = groupId
        self.isolationLevel = isolationLevel
        self.autoOffsetReset = autoOffsetReset
        self.sessionTimeout = sessionTimeout
        self.heartbeatInterval = heartbeatInterval
        self.maxPollInterval = maxPollInterval
        self.assignor = assignor
        self.maxBatchSize = maxBatchSize
        self.revocationTimeout = revocationTimeout
    }

    func librdkafkaProperties() -> [(String, String)] {
        var result = kafka.librdkafkaProperties()
        result.append(("group.id", groupId))
        result.append(("enable.auto.commit", "false"))
        result.append(("enable.auto.offset.store", "false"))
        result.append(("isolation.level", isolationLevel.rawValue))
        result.append(("auto.offset.reset", autoOffsetReset.rawValue))
        result.append(("session.timeout.ms", String(sessionTimeout.wholeMilliseconds)))
        result.append(("heartbeat.interval.ms", String(heartbeatInterval.wholeMilliseconds)))
        result.append(("max.poll.interval.ms", String(maxPollInterval.wholeMilliseconds)))
        result.append(("partition.assignment.strategy", assignor))
        if let groupInstanceId { result.append(("group.instance.id", groupInstanceId)) }
        result.append(contentsOf: kafka.properties.sorted { $0.key < $1.key })
        return result
    }
}

extension Duration {
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// For librdkafka's `int timeout_ms` parameters.
    var timeoutMilliseconds: Int32 {
        Int32(clamping: max(0, wholeMilliseconds))
    }
}
