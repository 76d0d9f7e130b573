import CRdKafka

// The admin operations `KafkaAdmin` and the partition readers need: create topics, list topics, list a group's
// members. Each is blocking (run through `RDKafkaClient.blocking`) and returns Swift values.

extension RDKafkaHandle {
    /// Creates topics through the admin API and waits for the cluster's answer; topics that exist already are
    /// reported, not treated as errors.
    func createTopics(_ topics: [NewTopic], timeout: Duration) -> Result<CreateTopicsResult, KafkaError> {
        let newTopics = NewTopicObjects()
        defer { newTopics.destroy() }
        if let error = newTopics.add(topics) { return .failure(error) }
        let options = adminOptions(timeout: timeout)
        defer { rd_kafka_AdminOptions_destroy(options) }
        let queue = rd_kafka_queue_new(pointer)
        defer { rd_kafka_queue_destroy(queue) }
        newTopics.objects.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(pointer, buffer.baseAddress, buffer.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeout.timeoutMilliseconds + 1000) else {
            return .failure(
                .timedOut(
                    "creating topics (does the cluster support CreateTopics? the embedded mock does not)",
                    after: timeout))
        }
        defer { rd_kafka_event_destroy(event) }
        return Self.createTopicsResult(event)
    }

    /// CreateTopics options with both the broker's operation timeout and the request timeout at `timeout`, so
    /// one slow broker cannot stretch the call past what the caller allowed.
    private func adminOptions(timeout: Duration) -> OpaquePointer? {
        var errstr = [CChar](repeating: 0, count: 512)
        let options = rd_kafka_AdminOptions_new(pointer, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeout.timeoutMilliseconds, &errstr, errstr.count)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeout.timeoutMilliseconds, &errstr, errstr.count)
        return options
    }

    /// Sorts the per-topic answers: created, already there, or the first other error (which fails the call).
    private static func createTopicsResult(_ event: OpaquePointer) -> Result<CreateTopicsResult, KafkaError> {
        let eventError = rd_kafka_event_error(event)
        if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
            return .failure(.from(RDKafkaCode(eventError), context: "creating topics"))
        }
        var result = CreateTopicsResult(created: [], alreadyExisted: [])
        var count = 0
        guard let eventResult = rd_kafka_event_CreateTopics_result(event),
            let results = rd_kafka_CreateTopics_result_topics(eventResult, &count)
        else { return .success(result) }
        for index in 0..<count {
            let topicResult = results[index]
            let name = String(cString: rd_kafka_topic_result_name(topicResult))
            let err = RDKafkaCode(rd_kafka_topic_result_error(topicResult))
            switch err {
            case .noError:
                result.created.append(name)
            case .topicAlreadyExists:
                result.alreadyExisted.append(name)
            default:
                let detail = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) } ?? ""
                return .failure(.from(err, context: "creating topic \(name) (\(detail))"))
            }
        }
        return .success(result)
    }

    /// Every topic in the cluster with its partition count (topics the metadata reports an error for are left out).
    func topicPartitionCounts(timeout: Duration) -> Result<[String: Int], KafkaError> {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(pointer, 1, nil, &metadata, timeout.timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            return .failure(.from(RDKafkaCode(err), context: "reading cluster metadata"))
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

    /// The members of a consumer group as its coordinator lists them.
    func groupMembers(_ group: String, timeout: Duration) -> Result<[GroupMember], KafkaError> {
        var list: UnsafePointer<rd_kafka_group_list>?
        // Deprecated in favour of the admin API's DescribeConsumerGroups, but synchronous and enough here: the member
        // and client ids are what is asked for. Every broker is asked; only the coordinator answers without an error.
        let err = rd_kafka_list_groups(pointer, group, &list, timeout.timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__PARTIAL, let list else {
            return .failure(.from(RDKafkaCode(err), context: "describing group \(group)"))
        }
        defer { rd_kafka_group_list_destroy(list) }
        var firstError: RDKafkaCode?
        for index in 0..<Int(list.pointee.group_cnt) {
            let info = list.pointee.groups[index]
            guard String(cString: info.group) == group else { continue }
            guard info.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                firstError = firstError ?? RDKafkaCode(info.err)
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
            .from(firstError ?? .partial, context: "describing group \(group): no coordinator answered"))
    }
}

/// The `rd_kafka_NewTopic_t` objects of one CreateTopics call; every one made is destroyed with the rest, also
/// when a later topic's name or config is refused.
private final class NewTopicObjects {
    var objects: [OpaquePointer?] = []

    /// Adds each topic with its configs (sorted, so a refusal names the same config every time).
    /// - Returns: the first refusal, or `nil`.
    func add(_ topics: [NewTopic]) -> KafkaError? {
        var errstr = [CChar](repeating: 0, count: 512)
        for topic in topics {
            guard
                let newTopic = rd_kafka_NewTopic_new(
                    topic.name, topic.partitions, topic.replicationFactor, &errstr, errstr.count)
            else {
                return KafkaError(code: .librdkafka, message: "topic \(topic.name): \(cString(errstr))")
            }
            objects.append(newTopic)
            for (name, value) in topic.configs.sorted(by: { $0.key < $1.key }) {
                let err = rd_kafka_NewTopic_set_config(newTopic, name, value)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    return .from(RDKafkaCode(err), context: "topic \(topic.name) config \(name)=\(value)")
                }
            }
        }
        return nil
    }

    func destroy() {
        for object in objects { rd_kafka_NewTopic_destroy(object) }
    }
}
