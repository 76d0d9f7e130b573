/// Why a key could not be loaded or a config could not be sealed or unsealed, and what to do about it.
public struct SealingError: Error, CustomStringConvertible, Sendable {
    private enum Code: Sendable {
        case badKey
        case keyFile
        case unknownKeyId
        case authenticationFailed
        case malformed
        case encoding
    }

    private let code: Code
    public let description: String

    private init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    /// True when the record names a key this process was not given: adding that key fixes it, the record is fine.
    public var isUnknownKey: Bool { code == .unknownKeyId }

    static let generateHint = "generate one with `head -c 32 /dev/urandom | base64`"

    static func badKey(source: String, problem: String) -> SealingError {
        SealingError(
            .badKey,
            "sealing key from \(source) \(problem); a sealing key is base64 of exactly 32 random bytes — "
                + generateHint)
    }

    static func keyFile(path: String, problem: String) -> SealingError {
        SealingError(
            .keyFile,
            "sealing key file \(path): \(problem); put one key per line as `id:base64` or a single base64 "
                + "key (\(generateHint)) and pass it with --sealing-key-file or ACTIVITY_SYNC_SEALING_KEY_FILE")
    }

    static func unknownKeyId(_ keyId: String, known: [String]) -> SealingError {
        SealingError(
            .unknownKeyId,
            "account sealed with key id \(keyId) which this process does not have (it has "
                + "\(known.joined(separator: ", "))); add it to the key file as a later line `\(keyId):<base64>`")
    }

    static func authenticationFailed(keyId: String) -> SealingError {
        SealingError(
            .authenticationFailed,
            "sealed config under key id \(keyId) failed authentication: the ciphertext was "
                + "altered or sealed with a different key that has the same id; re-add the account")
    }

    static func malformed(_ problem: String) -> SealingError {
        SealingError(.malformed, "sealed config is malformed: \(problem); re-add the account")
    }

    static func encoding(_ problem: String) -> SealingError {
        SealingError(.encoding, "config could not be encoded as JSON: \(problem)")
    }
}
