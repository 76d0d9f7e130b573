import Crypto
public import Foundation
public import SyncModel

/// A named 256-bit AES key.
///
/// The id travels with every ciphertext so keys can rotate: a reader picks the key by id, and a record sealed
/// under a key it lacks fails with an error that says which key to add instead of decrypting to garbage.
public struct SealingKey: Sendable {
    /// Short, stable name of the key (given, or the first 8 hex digits of SHA-256 of the key bytes).
    public let id: String
    /// The raw bytes; `SymmetricKey` is not `Sendable` here, so one is made per use (it is a cheap wrapper).
    private let bytes: Data

    var key: SymmetricKey { SymmetricKey(data: bytes) }

    /// Reads a key from its base64 text.
    /// - Parameters:
    ///   - id: The key's name; derived from the key when nil, so the same key always gets the same id.
    ///   - base64: Base64 of exactly 32 bytes.
    ///   - source: Where the text came from (file and line), for the error message.
    /// - Throws: ``SealingError`` naming the source and how to generate a valid key.
    public init(id: String? = nil, base64: String, source: String) throws(SealingError) {
        let text = base64.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw .badKey(source: source, problem: "is empty") }
        guard let bytes = Data(base64Encoded: text) else {
            throw .badKey(source: source, problem: "is not valid base64")
        }
        guard bytes.count == 32 else {
            throw .badKey(source: source, problem: "decodes to \(bytes.count) bytes, not 32")
        }
        try self.init(id: id, bytes: bytes, source: source)
    }

    /// Wraps 32 raw key bytes.
    public init(id: String? = nil, bytes: Data, source: String = "bytes") throws(SealingError) {
        guard bytes.count == 32 else {
            throw .badKey(source: source, problem: "has \(bytes.count) bytes, not 32")
        }
        if let id {
            guard !id.isEmpty, !id.contains(":"), !id.contains(where: \.isWhitespace) else {
                throw .badKey(source: source, problem: "has id '\(id)', which must be non-empty without ':' or spaces")
            }
        }
        self.bytes = bytes
        self.id = id ?? SHA256.hash(data: bytes).prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    /// A fresh random key, for tests and `accounts` tooling that needs a throwaway key.
    public static func random(id: String? = nil) -> SealingKey {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        // 32 bytes and a nil or valid id cannot fail.
        return try! SealingKey(id: id, bytes: bytes)
    }

    /// The key as base64, to write a key file in tests.
    public var base64: String { bytes.base64EncodedString() }
}

/// Seals account configs (which hold access and refresh tokens) so that Kafka only ever stores ciphertext.
///
/// AES-256-GCM authenticates as well as encrypts: a flipped bit or a swapped key id makes ``unseal(_:)`` throw
/// rather than hand a worker a corrupted token. The key id is bound as associated data, so relabelling a
/// ciphertext with another id fails too.
public struct Sealer: Sendable {
    /// The key new configs are sealed with.
    public let current: SealingKey
    private let keys: [String: SealingKey]

    /// - Parameters:
    ///   - current: Seals new configs and unseals configs carrying its id.
    ///   - older: Retired keys still needed to unseal configs sealed before a rotation.
    public init(current: SealingKey, older: [SealingKey] = []) {
        self.current = current
        var keys: [String: SealingKey] = [:]
        for key in older { keys[key.id] = key }
        keys[current.id] = current
        self.keys = keys
    }

    /// Every key id this sealer can unseal, current first.
    public var keyIds: [String] { [current.id] + keys.keys.filter { $0 != current.id }.sorted() }

    /// Whether a config sealed under `keyId` can be unsealed here.
    public func canUnseal(keyId: String) -> Bool { keys[keyId] != nil }

    /// Encrypts a config under the current key.
    public func seal(_ config: JSONValue) throws(SealingError) -> SealedConfig {
        let plaintext: [UInt8]
        do {
            plaintext = try WireFormat.encode(config)
        } catch {
            throw .encoding("\(error)")
        }
        do {
            let box = try AES.GCM.seal(plaintext, using: current.key, authenticating: Self.aad(current.id))
            guard let combined = box.combined else { throw SealingError.malformed("no combined representation") }
            return SealedConfig(keyId: current.id, ciphertext: combined.base64EncodedString())
        } catch let error as SealingError {
            throw error
        } catch {
            throw .encoding("AES-GCM failed: \(error)")
        }
    }

    /// Decrypts a config sealed under any key this sealer has.
    /// - Throws: ``SealingError`` when the key id is unknown (``SealingError/isUnknownKey``), the ciphertext was
    ///   tampered with, or the plaintext is not JSON.
    public func unseal(_ sealed: SealedConfig) throws(SealingError) -> JSONValue {
        guard sealed.algorithm == "AES-256-GCM" else {
            throw .malformed("algorithm '\(sealed.algorithm)' is not AES-256-GCM")
        }
        guard let key = keys[sealed.keyId] else { throw .unknownKeyId(sealed.keyId, known: keyIds) }
        guard let combined = Data(base64Encoded: sealed.ciphertext), combined.count >= 28 else {
            throw .malformed("ciphertext is not base64 of nonce, ciphertext and tag")
        }
        let plaintext: Data
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            plaintext = try AES.GCM.open(box, using: key.key, authenticating: Self.aad(sealed.keyId))
        } catch {
            throw .authenticationFailed(keyId: sealed.keyId)
        }
        do {
            return try WireFormat.decode(JSONValue.self, from: plaintext)
        } catch {
            throw .malformed("plaintext is not JSON")
        }
    }

    private static func aad(_ keyId: String) -> Data { Data("activity-sync/sealed-config/\(keyId)".utf8) }
}

extension Sealer {
    /// The environment variable naming the key file when `--sealing-key-file` is not given.
    public static let keyFileEnvironmentVariable = "ACTIVITY_SYNC_SEALING_KEY_FILE"

    /// Parses a key file: one key per line as `id:base64`, or a single bare base64 key (its id derived). The first
    /// key is current; the others unseal older records. Blank lines and `#` comments are ignored.
    /// - Parameter source: Where the text came from, for error messages.
    public init(keyFileContents text: String, source: String) throws(SealingError) {
        var keys: [SealingKey] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let where_ = "\(source) line \(index + 1)"
            if let colon = line.firstIndex(of: ":") {
                let id = String(line[..<colon])
                keys.append(try SealingKey(id: id, base64: String(line[line.index(after: colon)...]), source: where_))
            } else {
                keys.append(try SealingKey(base64: line, source: where_))
            }
        }
        guard let first = keys.first else { throw .keyFile(path: source, problem: "holds no key") }
        var seen = Set<String>()
        for key in keys where !seen.insert(key.id).inserted {
            throw .keyFile(path: source, problem: "key id \(key.id) appears twice")
        }
        self.init(current: first, older: Array(keys.dropFirst()))
    }

    /// Loads the key file at `path`.
    public init(keyFile path: String) throws(SealingError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .keyFile(path: path, problem: "cannot be read (\((error as NSError).localizedDescription))")
        }
        try self.init(keyFileContents: text, source: path)
    }

    /// The sealer named by an explicit path, else by ``keyFileEnvironmentVariable``, else nil.
    public static func load(
        keyFile path: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(SealingError) -> Sealer? {
        if let path, !path.isEmpty { return try Sealer(keyFile: path) }
        if let path = environment[keyFileEnvironmentVariable], !path.isEmpty { return try Sealer(keyFile: path) }
        return nil
    }
}
