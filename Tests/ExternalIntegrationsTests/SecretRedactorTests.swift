import Foundation
import SyncModel
import Testing

@testable import ExternalIntegrations

/// A CLI's stderr and a sync's status reason never carry a secret, in the forms a program prints one.
@Suite("Secret redaction")
struct SecretRedactorTests {
    let token = "gho_s3cr3t/Token+With\"Quotes"
    var redactor: SecretRedactor { SecretRedactor(["access_token": .string(token), "user": "octocat-sim"]) }

    @Test("the secret as given, JSON-escaped and percent-encoded")
    func escapedForms() throws {
        let json = String(decoding: try JSONEncoder().encode(["t": token]), as: UTF8.self)
        #expect(!json.contains(token), "the escaped form differs from the secret")
        for text in [
            "token \(token) here", "body \(json)",
            "GET /x?access_token=\(token.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)",
        ] {
            let redacted = redactor(text)
            #expect(redacted.contains("[redacted]"), "\(text) → \(redacted)")
            #expect(!redacted.contains("s3cr3t"), "\(text) → \(redacted)")
        }
    }

    @Test("base64 at every alignment inside a longer value, standard and URL-safe")
    func base64Forms() {
        for prefix in ["", "u:", "us:", "use:"] {
            let plain = Data("\(prefix)\(token)".utf8)
            for encoded in [
                plain.base64EncodedString(),
                plain.base64EncodedString().replacingOccurrences(of: "+", with: "-")
                    .replacingOccurrences(of: "/", with: "_"),
            ] {
                let redacted = redactor("Authorization: Basic \(encoded)")
                #expect(redacted.contains("[redacted]"), "prefix \(prefix.count): \(redacted)")
                // What is left of the encoded value is at most the groups shared with the prefix and the end.
                #expect(redacted.count < "Authorization: Basic ".count + encoded.count, "\(redacted)")
            }
        }
    }

    @Test("a line cut at the length limit loses the start of a secret at its end")
    func cutLines() {
        let cut = "retrying with \(token.prefix(9)) […]"
        #expect(redactor(cut) == "retrying with [redacted] […]")
        #expect(redactor("not cut: gho_s") == "not cut: gho_s", "only cut lines are trimmed")
        #expect(redactor("short values are left alone: octo […]") == "short values are left alone: [redacted] […]")
    }
}
