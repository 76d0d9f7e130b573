import ExternalIntegrations
import Foundation
import IntegrationCatalog
import Logging
import SyncModel
import Testing

@Suite("Integration catalog")
struct IntegrationCatalogTests {
    /// A built-in as the CLI hands one in: only its key and spec matter to the catalog.
    struct BuiltIn: Integration {
        let key: String
        func spec() -> JSONValue { ["name": .string(key.capitalized), "key": .string(key)] }
        func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
            throw IntegrationError(.permanent, "not in this test")
        }
        func sync(_ request: SyncRequest) async throws -> SyncOutcome {
            throw IntegrationError(.permanent, "not in this test")
        }
    }

    static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    static func manifest(_ key: String) -> IntegrationManifest {
        IntegrationManifest(
            key: key, command: ["/bin/true"],
            spec: ["name": .string(key), "key": .string(key), "schedule": ["frequency": "*/5 * * * *"]])
    }

    /// An integrations file with these entries, written as a person editing it by hand might.
    static func file(_ keys: [String]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "integrations-\(UUID().uuidString).json"
        ).path
        try Data(WireFormat.encode(IntegrationManifestFile(integrations: keys.map(manifest)))).write(
            to: URL(fileURLWithPath: path))
        return path
    }

    @Test("a file entry with a built-in's key stops the load, naming the file, the entry and the fix")
    func reservedKey() throws {
        let path = try Self.file(["linear", "github"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect {
            try IntegrationCatalog.load(
                builtIns: [BuiltIn(key: "github")], integrationsFile: path, logger: Self.quiet)
        } throws: {
            "\($0)"
                == "integrations file \(path) names github, which is built in: remove that entry or give it another "
                + "key (activity-sync integrations add refuses it too)"
        }
        // Whatever the built-ins are: a second one's key is reserved as soon as it is handed in.
        #expect {
            try IntegrationCatalog.load(
                builtIns: [BuiltIn(key: "github"), BuiltIn(key: "linear")], integrationsFile: try Self.file(["linear"]),
                logger: Self.quiet)
        } throws: { "\($0)".contains("names linear, which is built in") }
    }

    @Test("a key named twice stops the load instead of one entry silently winning")
    func duplicateKey() throws {
        let path = try Self.file(["linear", "slack", "linear"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect {
            try IntegrationCatalog.load(
                builtIns: [BuiltIn(key: "github")], integrationsFile: path, logger: Self.quiet)
        } throws: { "\($0)" == "integrations file \(path) names linear twice: remove one of the entries" }
        #expect(throws: IntegrationCatalogError.duplicateKey("github", source: "the built-in integrations")) {
            try IntegrationCatalog(builtIns: [BuiltIn(key: "github"), BuiltIn(key: "github")])
        }
    }

    @Test("the keys are the built-ins' and the file's; the scheduler's extra keys are the file's")
    func keys() throws {
        let path = try Self.file(["slack", "linear"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let catalog = try IntegrationCatalog.load(
            builtIns: [BuiltIn(key: "github")], integrationsFile: path, logger: Self.quiet)
        #expect(catalog.keys == ["github", "slack", "linear"])
        #expect(catalog.builtInKeys == ["github"])
        #expect(catalog.externalKeys == ["slack", "linear"])
        #expect(catalog.entries.map(\.key) == ["github", "slack", "linear"], "built-ins first, then the file's order")
        #expect(catalog.manifest("linear") == Self.manifest("linear"))
        #expect(catalog.manifest("github") == nil, "a built-in has no manifest")

        let builtInsOnly = try IntegrationCatalog.load(
            builtIns: [BuiltIn(key: "github")], integrationsFile: nil, logger: Self.quiet)
        #expect(builtInsOnly.keys == ["github"])
        #expect(builtInsOnly.externalKeys.isEmpty)
    }

    @Test("the worker's registry holds the built-ins and the file's integrations")
    func registry() throws {
        let path = try Self.file(["linear"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let registry = try IntegrationCatalog.load(
            builtIns: [BuiltIn(key: "github")], integrationsFile: path, logger: Self.quiet
        ).registry
        #expect(registry.keys == ["github", "linear"])
        #expect(registry["github"] is BuiltIn)
        #expect((registry["linear"] as? ExternalIntegration)?.manifest == Self.manifest("linear"))
    }
}
