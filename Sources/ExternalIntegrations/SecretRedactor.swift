import Crypto
import Foundation
public import SyncModel

/// Replaces every secret in a text with `[redacted]`, before it reaches a log line or a status reason.
///
/// Secrets are every string value (at any depth) of the documents it is built from — an account config, an
/// integration definition — because the worker cannot know which of a CLI's config fields are tokens. Strings
/// shorter than four characters are left alone: they would shred the text without protecting anything.
///
/// A CLI rarely prints a token as it got it: each secret is also looked for JSON-escaped, percent-encoded (a word
/// that decodes to one) and in
/// base64 (standard and URL-safe, at each of the three byte alignments it can have inside a longer encoded value,
/// as in `Authorization: Basic …`), and a line the runner cut at its length limit (ending in ` […]`) loses a
/// trailing start of a secret too.
public struct SecretRedactor: Sendable {
    /// Every form of every secret, longest first, so a form that contains another is replaced whole.
    let forms: [String]
    /// The secrets as given, for the start of one at the end of a cut line.
    let secrets: [String]

    public init(_ documents: JSONValue...) {
        self.init(documents: documents)
    }

    init(documents: [JSONValue]) {
        var found = Set<String>()
        for document in documents { found.formUnion(Self.secrets(in: document)) }
        secrets = found.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
        var forms = found
        for secret in found { forms.formUnion(Self.derivedForms(of: secret)) }
        self.forms = forms.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    /// Every string value of `document`, at any depth, that is long enough to redact.
    static func secrets(in document: JSONValue) -> Set<String> {
        var found = Set<String>()
        func collect(_ value: JSONValue) {
            switch value {
            case .string(let text) where text.count >= 4: found.insert(text)
            case .array(let items): items.forEach(collect)
            case .object(let fields): fields.values.forEach(collect)
            default: break
            }
        }
        collect(document)
        return found
    }

    public func callAsFunction(_ text: String) -> String {
        var text = text
        for form in forms where text.contains(form) {
            text = text.replacingOccurrences(of: form, with: "[redacted]")
        }
        if text.contains("%") {
            // Encoders differ in what they escape (`_`, `~`, lower-case hex): a word that decodes to a secret goes.
            let separators = CharacterSet(charactersIn: " \t&=,;\"'()<>[]{}")
            for word in Set(text.components(separatedBy: separators)) where word.contains("%") {
                guard let decoded = word.removingPercentEncoding, secrets.contains(where: decoded.contains) else {
                    continue
                }
                text = text.replacingOccurrences(of: word, with: "[redacted]")
            }
        }
        let cutMark = " […]"
        guard text.hasSuffix(cutMark) else { return text }
        // The cut may have left the first characters of a secret at the end of the line.
        var body = String(text.dropLast(cutMark.count))
        for form in forms {
            for length in stride(from: min(form.count - 1, body.count), through: 4, by: -1)
            where body.hasSuffix(form.prefix(length)) {
                body = String(body.dropLast(length)) + "[redacted]"
                return body + cutMark
            }
        }
        return text
    }

    /// What a secret looks like escaped or encoded; only forms that differ from it and are long enough to mean
    /// something.
    static func derivedForms(of secret: String) -> Set<String> {
        var forms = Set<String>()
        // JSON-escaped, as inside a JSON string value.
        if let data = try? JSONEncoder().encode(secret), var json = String(data: data, encoding: .utf8),
            json.count >= 2
        {
            json = String(json.dropFirst().dropLast())
            forms.insert(json)
            forms.insert(json.replacingOccurrences(of: "\\/", with: "/"))
        }
        // Base64 at each alignment: the characters that depend only on the secret's own bytes.
        let bytes = Array(secret.utf8)
        for offset in 0..<3 {
            let padded = [UInt8](repeating: 0, count: offset) + bytes
            var encoded = Data(padded).base64EncodedString()
            encoded = String(encoded.prefix { $0 != "=" })
            // A group that holds a byte before the secret, or after it, is not the secret's alone.
            let skip = offset == 0 ? 0 : 4
            let total = padded.count
            let keep = (total / 3) * 4 - skip
            guard keep >= 8 else { continue }
            let stable = String(encoded.dropFirst(skip).prefix(keep))
            forms.insert(stable)
            forms.insert(stable.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_"))
        }
        forms.remove(secret)
        return forms.filter { $0.count >= 4 }
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
