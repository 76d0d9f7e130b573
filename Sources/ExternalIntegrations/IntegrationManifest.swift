public import Foundation
import Cron
import IntegrationCatalog
public import SyncModel

/// One external integration as the registry records it: how to run it, its limits, and the spec it printed.
///
/// The spec is stored so that listing integrations and defaulting an account's schedule need not run anything.
public struct IntegrationManifest: Codable, Sendable, Hashable {
    /// The key jobs and accounts name; lower case, as activity ids begin with it.
    public var key: String
    /// The program and its leading arguments; `spec`, `setup` or `sync` and their options are appended.
    public var command: [String]
    /// The `data` of the `spec` message, as validated by `integrations add`.
    public var spec: JSONValue
    /// Longest run of one `sync` (or `setup`/`spec`) before the process group is killed.
    public var timeoutSeconds: Int
    /// Syncs of this integration running at once in one worker; further jobs wait for a slot.
    public var concurrency: Int
    /// Largest stdout of one run, in bytes; past it the process group is killed and the sync fails.
    public var maxOutputBytes: Int
    /// Added to the minimal environment the process gets (never secrets: the file is not sealed).
    public var environment: [String: String]
    /// The child's working directory; nil keeps the worker's.
    public var workingDirectory: String?
    /// Passed as `--integration-definition`; nil passes `{"key","name","slug","spec","config":{}}`.
    public var definition: JSONValue?

    public static let defaultTimeoutSeconds = 60
    public static let defaultConcurrency = 8
    public static let defaultMaxOutputBytes = 16 << 20

    public init(
        key: String, command: [String], spec: JSONValue, timeoutSeconds: Int = defaultTimeoutSeconds,
        concurrency: Int = defaultConcurrency, maxOutputBytes: Int = defaultMaxOutputBytes,
        environment: [String: String] = [:], workingDirectory: String? = nil, definition: JSONValue? = nil
    ) {
        self.key = key
        self.command = command
        self.spec = spec
        self.timeoutSeconds = timeoutSeconds
        self.concurrency = concurrency
        self.maxOutputBytes = maxOutputBytes
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.definition = definition
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = try container.decode(String.self, forKey: .key)
        command = try container.decode([String].self, forKey: .command)
        spec = try container.decodeIfPresent(JSONValue.self, forKey: .spec) ?? [:]
        timeoutSeconds = try container.decodeIfPresent(Int.self, forKey: .timeoutSeconds) ?? Self.defaultTimeoutSeconds
        concurrency = try container.decodeIfPresent(Int.self, forKey: .concurrency) ?? Self.defaultConcurrency
        maxOutputBytes = try container.decodeIfPresent(Int.self, forKey: .maxOutputBytes) ?? Self.defaultMaxOutputBytes
        environment = try container.decodeIfPresent([String: String].self, forKey: .environment) ?? [:]
        workingDirectory = try container.decodeIfPresent(String.self, forKey: .workingDirectory)
        definition = try container.decodeIfPresent(JSONValue.self, forKey: .definition)
    }

    /// The spec's `schedule.frequency`: an account's default schedule.
    public var defaultFrequency: String? { spec["schedule"]?["frequency"]?.stringValue }

    /// What `--integration-definition` carries.
    public var integrationDefinition: JSONValue {
        definition ?? [
            "key": .string(key), "slug": .string(key), "name": spec["name"] ?? .string(key), "spec": spec,
            "config": [:],
        ]
    }

    /// Checks the fields an operator writes by hand.
    /// - Throws: ``ExternalIntegrationError`` naming the field.
    public func validate() throws {
        try Self.validate(key: key)
        guard let program = command.first, !program.isEmpty else {
            throw ExternalIntegrationError.invalidManifest("integration \(key): \"command\" is empty")
        }
        guard timeoutSeconds > 0, concurrency > 0, maxOutputBytes >= 1024 else {
            throw ExternalIntegrationError.invalidManifest(
                "integration \(key): timeoutSeconds and concurrency must be positive, maxOutputBytes at least 1024")
        }
        try Self.validate(spec: spec, key: key)
    }

    /// Keys start a stable activity id (`{key}:…`) and appear in topic records: `[a-z][a-z0-9_-]{0,39}`.
    public static func validate(key: String) throws {
        let scalars = Array(key.unicodeScalars)
        let allowed = { (scalar: Unicode.Scalar) in
            ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_"
        }
        guard let first = scalars.first, ("a"..."z").contains(first), scalars.count <= 40, scalars.allSatisfy(allowed)
        else {
            throw ExternalIntegrationError.invalidManifest(
                "integration key \"\(key.prefix(60))\" must be lower-case letters, digits, - or _, start with a "
                    + "letter, and be at most 40 characters")
        }
    }

    /// The spec checks of `integrations add`: the fields the SDK requires, a parseable schedule, a matching key.
    public static func validate(spec: JSONValue, key: String) throws {
        guard case .object(let object) = spec else { throw ExternalIntegrationError.invalidSpec("not a JSON object") }
        for field in ["name", "key"] where object[field]?.stringValue?.isEmpty != false {
            throw ExternalIntegrationError.invalidSpec("\"\(field)\" is missing or not a string")
        }
        if let specKey = object["key"]?.stringValue, specKey != key {
            throw ExternalIntegrationError.invalidSpec(
                "its key is \"\(specKey.prefix(60))\" but it is being registered as \"\(key)\"; use the spec's key")
        }
        guard let frequency = spec["schedule"]?["frequency"]?.stringValue else {
            throw ExternalIntegrationError.invalidSpec("\"schedule.frequency\" (a cron expression) is missing")
        }
        do {
            _ = try CronExpression(frequency)
        } catch {
            throw ExternalIntegrationError.invalidSpec("\"schedule.frequency\" \"\(frequency)\": \(error)")
        }
        if let auth = object["auth"], auth.objectValue == nil {
            throw ExternalIntegrationError.invalidSpec("\"auth\" must be an object")
        }
    }
}

/// The registry: a JSON file naming the external integrations, `{"integrations":[manifest, …]}`.
///
/// A file rather than a topic because the command it names must exist on every worker's filesystem anyway: the
/// file ships with the image or volume that ships the programs, so a worker can never learn of an integration it
/// cannot run, and a registration is reviewed and rolled out with the code it runs. See docs/integrations.md.
public struct IntegrationManifestFile: Codable, Sendable, Hashable {
    public var integrations: [IntegrationManifest]

    public init(integrations: [IntegrationManifest] = []) { self.integrations = integrations }

    /// The environment variable naming the file when no `--integrations-file` is given.
    public static let environmentVariable = "ACTIVITY_SYNC_INTEGRATIONS_FILE"

    /// The file's path from an option, else from ``environmentVariable``; nil when neither is set.
    public static func path(option: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        -> String?
    {
        if let option, !option.isEmpty { return option }
        if let value = environment[environmentVariable], !value.isEmpty { return value }
        return nil
    }

    /// Reads and validates the file. A missing file is an empty registry only when `missingIsEmpty`.
    /// - Parameter reservedKeys: keys no entry may have: the built-in integrations', which only the caller knows (a
    ///   file entry with one would silently replace it; ``IntegrationCatalog`` passes its own).
    /// - Throws: ``ExternalIntegrationError`` saying which file and which entry is wrong.
    public static func load(
        path: String, missingIsEmpty: Bool = false, reservedKeys: Set<String>
    ) throws -> IntegrationManifestFile {
        guard FileManager.default.fileExists(atPath: path) else {
            if missingIsEmpty { return IntegrationManifestFile() }
            throw ExternalIntegrationError.invalidManifest("integrations file \(path) does not exist")
        }
        let file: IntegrationManifestFile
        do {
            file = try WireFormat.decode(
                IntegrationManifestFile.self, from: Array(Data(contentsOf: URL(fileURLWithPath: path))))
        } catch {
            throw ExternalIntegrationError.invalidManifest("integrations file \(path) is not readable: \(error)")
        }
        do {
            try IntegrationCatalog.checkKeys(
                file.integrations.map(\.key), builtIns: reservedKeys, source: "integrations file \(path)")
        } catch {
            throw ExternalIntegrationError.invalidManifest(error.message)
        }
        for manifest in file.integrations {
            do {
                try manifest.validate()
            } catch let error as ExternalIntegrationError {
                throw ExternalIntegrationError.invalidManifest("integrations file \(path): \(error.message)")
            }
        }
        return file
    }

    /// Writes the file atomically (sorted keys, one stable layout), so a reader never sees half of it.
    public func save(path: String) throws {
        let encoder = WireFormat.encoder()
        encoder.outputFormatting.insert(.prettyPrinted)
        var data = try encoder.encode(self)
        data.append(UInt8(ascii: "\n"))
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Adds or replaces the integration with `manifest.key`.
    public mutating func upsert(_ manifest: IntegrationManifest) {
        integrations.removeAll { $0.key == manifest.key }
        integrations.append(manifest)
        integrations.sort { $0.key < $1.key }
    }

    public subscript(key: String) -> IntegrationManifest? { integrations.first { $0.key == key } }
}

/// Splits a command line into words the way a POSIX shell would for the simple cases: blanks separate words,
/// single quotes keep everything, double quotes keep blanks, a backslash escapes the next character. No
/// expansion of any kind: the result is run directly, never by a shell.
public func commandWords(_ line: String) throws -> [String] {
    var words: [String] = []
    var current = ""
    var inWord = false
    var quote: Character?
    var escaped = false
    for character in line {
        if escaped {
            current.append(character)
            escaped = false
            inWord = true
        } else if character == "\\" && quote != "'" {
            escaped = true
        } else if let open = quote {
            if character == open { quote = nil } else { current.append(character) }
        } else if character == "'" || character == "\"" {
            quote = character
            inWord = true
        } else if character == " " || character == "\t" || character == "\n" {
            if inWord { words.append(current) }
            current = ""
            inWord = false
        } else {
            current.append(character)
            inWord = true
        }
    }
    guard quote == nil, !escaped else {
        throw ExternalIntegrationError.invalidManifest("the command has an unterminated quote or a trailing backslash")
    }
    if inWord { words.append(current) }
    return words
}
