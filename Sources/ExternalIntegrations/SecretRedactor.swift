import Crypto
import Foundation
public import SyncModel

/// Replaces every secret in a text with `[redacted]`, before it reaches a log line or a status reason.
///
/// Secrets are every string value (at any depth) of the documents it is built from — an account config, an
/// integration definition — because the worker cannot know which of a CLI's config fields are tokens. Strings
/// shorter than four characters are left alone: they would shred the text without protecting anything.
public struct SecretRedactor: Sendable {
    /// Longest first, so a secret that contains another is replaced whole.
    let secrets: [String]

    public init(_ documents: JSONValue...) {
        var found = Set<String>()
        func collect(_ value: JSONValue) {
            switch value {
            case .string(let text) where text.count >= 4: found.insert(text)
            case .array(let items): items.forEach(collect)
            case .object(let fields): fields.values.forEach(collect)
            default: break
            }
        }
        documents.forEach(collect)
        secrets = found.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    public func callAsFunction(_ text: String) -> String {
        var text = text
        for secret in secrets where text.contains(secret) {
            text = text.replacingOccurrences(of: secret, with: "[redacted]")
        }
        return text
    }
}

/// SHA-256 as lower-case hex.
enum SHA256Hex {
    static func digest(_ bytes: [UInt8]) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in SHA256.hash(data: bytes) {
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
