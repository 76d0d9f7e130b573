/// The Accounts module's error: what went wrong and what to do.
public struct AccountsError: Error, CustomStringConvertible, Sendable {
    private enum Code: Sendable {
        case missingTopic
        case unknownAccounts
    }

    private let code: Code
    public let description: String

    private init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    /// True when some requested accounts are not on the accounts topic (never added, or removed).
    public var isUnknownAccount: Bool { code == .unknownAccounts }

    static func missingTopic(_ topic: String) -> AccountsError {
        AccountsError(
            .missingTopic,
            "topic \(topic) does not exist; create the topics first (`activity-sync topics create`) or check "
                + "--bootstrap and --topic-prefix")
    }

    /// The accounts are not on the accounts topic.
    public static func unknownAccounts(_ accountIds: [String], topic: String) -> AccountsError {
        let shown = accountIds.prefix(10).joined(separator: ", ") + (accountIds.count > 10 ? ", …" : "")
        let noun = accountIds.count == 1 ? "account \(shown) is" : "\(accountIds.count) accounts (\(shown)) are"
        return AccountsError(
            .unknownAccounts,
            "\(noun) not on \(topic); add it with `activity-sync accounts add` or check the id with "
                + "`activity-sync accounts list`")
    }
}
