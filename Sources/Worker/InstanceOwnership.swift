import Kafka

/// Who holds this worker's `group.instance.id`, told from the consumer group's member list rather than from timing.
///
/// librdkafka makes `FENCED_INSTANCE_ID` fatal for a consumer whatever caused it, and two causes look the same:
/// - this process's own consumer rejoined under its instance id (a broker restart, a session timeout, a lost
///   JoinGroup answer) and a request still carrying the old member id was refused — the common case;
/// - another process started with the same `--id` and joined under the same instance id.
///
/// The group coordinator records the `client.id` of whoever joined last. The consumer's client id carries a token
/// drawn once per process (`<instance id>/<token>`), so the member that now holds the instance id says which
/// process it belongs to.
struct InstanceOwnership: Sendable, Hashable {
    /// The worker's `group.instance.id` (its transactional id).
    var instanceId: String
    /// Drawn once per process; the same for every consumer this process creates.
    var token: String

    init(instanceId: String, token: String = InstanceOwnership.newToken()) {
        self.instanceId = instanceId
        self.token = token
    }

    static func newToken() -> String {
        let value = UInt64.random(in: 0...UInt64(UInt32.max))
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 8 - hex.count)) + hex
    }

    /// The consumer's `client.id`.
    var clientId: String { "\(instanceId)/\(token)" }

    enum Verdict: Sendable, Hashable {
        /// Only this process's consumers hold the id, or nobody does (it expired): the consumer fenced itself.
        case thisProcess
        /// Another process's consumer holds the id.
        case anotherProcess(GroupMember)
        /// The member list could not be read (the coordinator is still away); says why.
        case unknown(String)
    }

    /// Judges the member list the coordinator gave (or its error).
    func judge(_ members: Result<[GroupMember], KafkaError>) -> Verdict {
        switch members {
        case .failure(let error):
            return .unknown("\(error)")
        case .success(let members):
            if let other = members.first(where: holdsThisIdFromAnotherProcess) { return .anotherProcess(other) }
            return .thisProcess
        }
    }

    /// A member with this worker's identity in its client id but another token; or one whose member id is the one a
    /// broker gives a static member of this instance id (`<instance id>-<UUID>`, as Kafka and kfake do) while its
    /// client id is not this process's — a worker of a version without the token.
    private func holdsThisIdFromAnotherProcess(_ member: GroupMember) -> Bool {
        if member.clientId == clientId { return false }
        if member.clientId.hasPrefix(instanceId + "/") { return true }
        let prefix = instanceId + "-"
        guard member.memberId.hasPrefix(prefix) else { return false }
        return Self.isUUID(member.memberId.dropFirst(prefix.count))
    }

    /// 8-4-4-4-12 hex digits: what follows the instance id in a static member's id. Another worker whose id merely
    /// starts with this one's (`a` and `a-2`) has more before it.
    private static func isUUID(_ text: Substring) -> Bool {
        let groups = text.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.map(\.count) == [8, 4, 4, 4, 12] else { return false }
        return groups.allSatisfy { $0.allSatisfy(\.isHexDigit) }
    }
}
