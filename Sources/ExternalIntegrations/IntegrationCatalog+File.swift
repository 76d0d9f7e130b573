public import IntegrationCatalog
public import Logging

extension IntegrationCatalog {
    /// The built-ins and the integrations file's entries, each entry run as an ``ExternalIntegration``.
    /// - Parameters:
    ///   - builtIns: the integrations compiled into the binary; their keys are reserved in the file.
    ///   - path: the integrations file; nil: the built-ins only.
    /// - Throws: ``ExternalIntegrationError`` naming the file and the entry that is wrong (a built-in key, a key
    ///   twice, a bad manifest), or that the file is missing or unreadable.
    public static func load(
        builtIns: [any Integration], integrationsFile path: String?, logger: Logger
    ) throws -> IntegrationCatalog {
        guard let path else { return try IntegrationCatalog(builtIns: builtIns) }
        let file = try IntegrationManifestFile.load(path: path, reservedKeys: Set(builtIns.map(\.key)))
        return try IntegrationCatalog(
            builtIns: builtIns, external: file.integrations.map { ExternalIntegration(manifest: $0, logger: logger) },
            source: "integrations file \(path)")
    }

    /// The manifest of the file's entry with `key`; nil for a built-in or an unknown key.
    public func manifest(_ key: String) -> IntegrationManifest? {
        (self[key] as? ExternalIntegration)?.manifest
    }
}
