/// The integrations one deployment runs: those built into the binary, then those of its integrations file.
///
/// Every role asks this one value: the worker for its ``registry``, the scheduler's account validation for the
/// ``externalKeys`` it accepts beside its built-ins, `integrations list` for each entry's spec. The key rules hold
/// when it is made, so a file that names a built-in key or one key twice stops the process that loads it instead of
/// silently replacing an integration.
///
/// It knows integrations only as ``Integration``: the CLI hands it the built-ins (GitHub's) and
/// `ExternalIntegrations` adds the file's entries, so neither of those modules imports the other.
public struct IntegrationCatalog: Sendable {
    /// One integration and where it came from.
    public struct Entry: Sendable {
        public let integration: any Integration
        /// Compiled into the binary, not named by the integrations file.
        public let isBuiltIn: Bool

        public var key: String { integration.key }
    }

    /// The built-ins in the order given, then the file's entries in the file's order.
    public let entries: [Entry]

    /// - Parameters:
    ///   - builtIns: the integrations compiled into the binary.
    ///   - external: the integrations file's entries.
    ///   - source: what named `external`, for error messages, e.g. `integrations file /etc/integrations.json`.
    /// - Throws: ``IntegrationCatalogError`` when an external key is a built-in one or any key appears twice.
    public init(
        builtIns: [any Integration], external: [any Integration] = [], source: String = "the integrations file"
    ) throws(IntegrationCatalogError) {
        try Self.checkKeys(builtIns.map(\.key), source: "the built-in integrations")
        try Self.checkKeys(external.map(\.key), builtIns: Set(builtIns.map(\.key)), source: source)
        entries =
            builtIns.map { Entry(integration: $0, isBuiltIn: true) }
            + external.map { Entry(integration: $0, isBuiltIn: false) }
    }

    /// The key rules of a list of integrations: none is one of `builtIns` (it would replace that integration) and
    /// none appears twice (one would silently win).
    /// - Parameter source: what named `keys`, for the message, e.g. `integrations file /etc/integrations.json`.
    public static func checkKeys(
        _ keys: [String], builtIns: Set<String> = [], source: String
    ) throws(IntegrationCatalogError) {
        var seen = Set<String>()
        for key in keys {
            guard !builtIns.contains(key) else { throw .reservedKey(key, source: source) }
            guard seen.insert(key).inserted else { throw .duplicateKey(key, source: source) }
        }
    }

    /// The registry a worker runs jobs with.
    public var registry: IntegrationRegistry { IntegrationRegistry(entries.map(\.integration)) }

    /// Every key accounts may name.
    public var keys: Set<String> { Set(entries.map(\.key)) }

    /// The keys of the built-in integrations: reserved, an integrations file may not name them.
    public var builtInKeys: Set<String> { Set(entries.filter(\.isBuiltIn).map(\.key)) }

    /// The keys of the integrations file's entries.
    public var externalKeys: Set<String> { Set(entries.filter { !$0.isBuiltIn }.map(\.key)) }

    public subscript(key: String) -> (any Integration)? { entries.first { $0.key == key }?.integration }
}

/// Why a list of integrations cannot be a catalog: which entry, and what to do about it.
public struct IntegrationCatalogError: Error, CustomStringConvertible, Sendable, Hashable {
    private enum Code: Hashable, Sendable {
        case reservedKey
        case duplicateKey
    }

    private let code: Code
    public let message: String
    public var description: String { message }

    /// An entry names a built-in integration's key.
    public static func reservedKey(_ key: String, source: String) -> Self {
        Self(
            code: .reservedKey,
            message: "\(source) names \(key), which is built in: remove that entry or give it another key "
                + "(activity-sync integrations add refuses it too)")
    }

    /// Two entries name the same key.
    public static func duplicateKey(_ key: String, source: String) -> Self {
        Self(code: .duplicateKey, message: "\(source) names \(key) twice: remove one of the entries")
    }
}
