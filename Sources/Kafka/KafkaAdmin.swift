import CRdKafka
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
            type: RD_KAFKA_PRODUCER, properties: properties,
            context: ClientContext(logger: logger, statisticsHandler: configuration.statisticsHandler), callbacks: [])
        self.client = client
        let handle = client.handle
        pollThread = PollThread(name: "kafka-admin-poll") { rd_kafka_poll(handle.pointer, 100) }
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
            Self.createTopics(rk, topics, timeout: timeout)
        }
    }

    private static func createTopics(_ rk: OpaquePointer, _ topics: [NewTopic], timeout: Duration) -> Result<
        CreateTopicsResult, KafkaError
    > {
        var errstr = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
        for topic in topics {
            guard
                let newTopic = rd_kafka_NewTopic_new(
                    topic.name, topic.partitions, topic.replicationFactor, &errstr, errstr.count)
            else {
                return .failure(
                    KafkaError(code: .librdkafka, message: "topic \(topic.name): \(cString(errstr))"))
            }
            newTopics.append(newTopic)
            for (name, value) in topic.configs.sorted(by: { $0.key < $1.key }) {
                let err = rd_kafka_NewTopic_set_config(newTopic, name, value)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    return .failure(.from(err, context: "topic \(topic.name) config \(name)=\(value)"))
                }
            }
        }
        let options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeout.timeoutMilliseconds, &errstr, errstr.count)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeout.timeoutMilliseconds, &errstr, errstr.count)
        let queue = rd_kafka_queue_new(rk)
        defer { rd_kafka_queue_destroy(queue) }
        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(rk, buffer.baseAddress, buffer.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeout.timeoutMilliseconds + 1000) else {
            return .failure(
                .timedOut(
                    "creating topics (does the cluster support CreateTopics? the embedded mock does not)",
                    after: timeout))
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
            return .failure(.from(eventError, context: "creating topics"))
        }
        var result = CreateTopicsResult(created: [], alreadyExisted: [])
        var count = 0
        guard let eventResult = rd_kafka_event_CreateTopics_result(event),
            let results = rd_kafka_CreateTopics_result_topics(eventResult, &count)
        else { return .success(result) }
        for index in 0..<count {
            let topicResult = results[index]
            let name = String(cString: rd_kafka_topic_result_name(topicResult))
            let err = rd_kafka_topic_result_error(topicResult)
            switch err {
            case RD_KAFKA_RESP_ERR_NO_ERROR:
                result.created.append(name)
            case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
                result.alreadyExisted.append(name)
            default:
                let detail = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) } ?? ""
                return .failure(.from(err, context: "creating topic \(name) (\(detail))"))
            }
        }
        return .success(result)
    }

    /// Every topic in the cluster with its partition count.
    public func listTopics(timeout: Duration) async throws(KafkaError) -> [String: Int] {
        try await client.blocking("listTopics") { rk in
            listTopicMetadata(rk, timeout: timeout)
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
        try await client.blocking("groupMembers") { rk in Self.groupMembers(rk, group, timeout: timeout) }
    }

    private static func groupMembers(_ rk: OpaquePointer, _ group: String, timeout: Duration) -> Result<
        [GroupMember], KafkaError
    > {
        var list: UnsafePointer<rd_kafka_group_list>?
        // Deprecated in favour of the admin API's DescribeConsumerGroups, but synchronous and enough here: the member
        // and client ids are what is asked for. Every broker is asked; only the coordinator answers without an error.
        let err = rd_kafka_list_groups(rk, group, &list, timeout.timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__PARTIAL, let list else {
            return .failure(.from(err, context: "describing group \(group)"))
        }
        defer { rd_kafka_group_list_destroy(list) }
        var firstError: rd_kafka_resp_err_t?
        for index in 0..<Int(list.pointee.group_cnt) {
            let info = list.pointee.groups[index]
            guard String(cString: info.group) == group else { continue }
            guard info.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                firstError = firstError ?? info.err
                continue
            }
            var members: [GroupMember] = []
            for m in 0..<Int(info.member_cnt) {
                let member = info.members[m]
                members.append(
                    GroupMember(
                        memberId: member.member_id.map { String(cString: $0) } ?? "",
                        clientId: member.client_id.map { String(cString: $0) } ?? "",
                        host: member.client_host.map { String(cString: $0) } ?? ""))
            }
            return .success(members)
        }
        return .failure(
            .from(
                firstError ?? RD_KAFKA_RESP_ERR__PARTIAL, context: "describing group \(group): no coordinator answered")
        )
    }

    public func close(timeout: Duration = .seconds(10)) async {
        await client.destroy(timeout: timeout, pollThread: pollThread)
    }
}

func listTopicMetadata(_ rk: OpaquePointer, timeout: Duration) -> Result<[String: Int], KafkaError> {
    var metadata: UnsafePointer<rd_kafka_metadata>?
    let err = rd_kafka_metadata(rk, 1, nil, &metadata, timeout.timeoutMilliseconds)
    guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
        return .failure(.from(err, context: "reading cluster metadata"))
    }
    defer { rd_kafka_metadata_destroy(metadata) }
    var topics: [String: Int] = [:]
    for index in 0..<Int(metadata.pointee.topic_cnt) {
        let topic = metadata.pointee.topics[index]
        if topic.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            topics[String(cString: topic.topic)] = Int(topic.partition_cnt)
        }
    }
    return .success(topics)
}
