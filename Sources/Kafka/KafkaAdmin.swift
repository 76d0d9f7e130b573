public import Logging

/// A topic to create.
public struct NewTopic: Sendable, Hashable {
    public var name: String
    public var partitions: Int32
    public var replicationFactor: Int32
    /// Topic configs, e.g. `["cleanup.policy": "compact"]`.
    public var configs: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int32 = 1, configs: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.configs = configs
    }
}

/// What `createTopics` did.
public struct CreateTopicsResult: Sendable, Hashable {
    public var created: [String]
    /// Topics that existed already (left unchanged).
    public var alreadyExisted: [String]
}

/// Cluster administration: create and list topics.
/// One member of a consumer group, as its coordinator lists it.
public struct GroupMember: Sendable, Hashable {
    /// The member id the coordinator gave the member (a static member's starts with its `group.instance.id`).
    public var memberId: String
    /// The `client.id` the member joined with.
    public var clientId: String
    /// Where the member connected from, as the broker saw it.
    public var host: String

    public init(memberId: String, clientId: String, host: String) {
        self.memberId = memberId
        self.clientId = clientId
        self.host = host
    }
}

public final class KafkaAdmin: Sendable {
    private let client: RDKafkaClient
    private let pollThread: PollThread

    public init(configuration: KafkaConfiguration, logger: Logger) throws(KafkaError) {
        var properties = configuration.librdkafkaProperties()
        properties.append(contentsOf: configuration.properties.sorted { $0.key < $1.key })
        let client = try RDKafkaClient(
            kind: .producer, properties: properties,
            context: ClientContext(logger: logger, statisticsHandler: configuration.statisticsHandler), callbacks: [])
        self.client = client
        let handle = client.handle
        pollThread = PollThread(name: "kafka-admin-poll") { handle.poll(timeoutMilliseconds: 100) }
    }

    deinit {
        if !client.isDestroyed { client.destroyDetached(pollThread: pollThread) }
    }

    /// Creates topics; topics that already exist are reported, not treated as errors.
    /// - Throws: the first other per-topic error, or `.timedOut`.
    @discardableResult
    public func createTopics(_ topics: [NewTopic], timeout: Duration) async throws(KafkaError) -> CreateTopicsResult {
        if topics.isEmpty { return CreateTopicsResult(created: [], alreadyExisted: []) }
        return try await client.blocking("createTopics") { rk in
            rk.createTopics(topics, timeout: timeout)
        }
    }

    /// Every topic in the cluster with its partition count.
    public func listTopics(timeout: Duration) async throws(KafkaError) -> [String: Int] {
        try await client.blocking("listTopics") { rk in
            rk.topicPartitionCounts(timeout: timeout)
        }
    }

    /// ``listTopics(timeout:)`` through an admin client made for the question and closed after it, for callers that
    /// ask once (a worker checking its topics at start, a command).
    public static func listTopics(
        configuration: KafkaConfiguration, timeout: Duration, logger: Logger
    ) async throws(KafkaError) -> [String: Int] {
        let admin = try KafkaAdmin(configuration: configuration, logger: logger)
        let listed: Result<[String: Int], KafkaError>
        do {
            listed = .success(try await admin.listTopics(timeout: timeout))
        } catch {
            listed = .failure(error)
        }
        await admin.close()
        return try listed.get()
    }

    /// The members of a consumer group as its coordinator lists them (the group's state does not matter: members of a
    /// group in the middle of a rebalance are listed too). Empty for a group nobody has joined.
    /// - Throws: the coordinator's error for the group (`COORDINATOR_LOAD_IN_PROGRESS` after a broker restart, say),
    ///   or the request's (`_TIMED_OUT`, `_TRANSPORT`) when no broker answered.
    public func groupMembers(_ group: String, timeout: Duration) async throws(KafkaError) -> [GroupMember] {
        try await client.blocking("groupMembers") { rk in rk.groupMembers(group, timeout: timeout) }
    }

    public func close(timeout: Duration = .seconds(10)) async {
        await client.destroy(timeout: timeout, pollThread: pollThread)
    }
}
