import Foundation
import Sealing
import SyncModel
import Testing

@Suite("Sealing")
struct SealerTests {
    let config: JSONValue = ["accessToken": "gho_secret_access_token", "refreshToken": "ghr_secret_refresh", "n": 3]

    @Test func roundTripKeepsTheConfigAndHidesTheToken() throws {
        let sealer = Sealer(current: .random())
        let sealed = try sealer.seal(config)
        #expect(sealed.keyId == sealer.current.id)
        #expect(sealed.algorithm == "AES-256-GCM")
        #expect(!sealed.ciphertext.contains("gho_"))
        let recordBytes = String(decoding: try WireFormat.encode(sealed), as: UTF8.self)
        #expect(!recordBytes.contains("secret"))
        #expect(try sealer.unseal(sealed) == config)
        // A fresh nonce each time: the same config never produces the same ciphertext.
        #expect(try sealer.seal(config).ciphertext != sealed.ciphertext)
    }

    @Test func keyIdIsDerivedDeterministically() throws {
        let key = SealingKey.random()
        let again = try SealingKey(base64: key.base64, source: "test")
        #expect(key.id == again.id)
        #expect(key.id.count == 8)
        #expect(SealingKey.random().id != key.id)
        #expect(try SealingKey(id: "k2026", base64: key.base64, source: "test").id == "k2026")
    }

    @Test func unknownKeyIdSaysWhichKeyToAdd() throws {
        let sealed = try Sealer(current: .random(id: "old")).seal(config)
        let other = Sealer(current: .random(id: "new"))
        do {
            _ = try other.unseal(sealed)
            Issue.record("unsealed with the wrong key")
        } catch {
            #expect(error.isUnknownKey)
            #expect(error.description.contains("account sealed with key id old which this process does not have"))
            #expect(error.description.contains("add it to the key file"))
        }
    }

    @Test func tamperedCiphertextIsRejected() throws {
        let sealer = Sealer(current: .random(id: "k1"))
        var sealed = try sealer.seal(config)
        var bytes = Data(base64Encoded: sealed.ciphertext)!
        bytes[bytes.count / 2] ^= 0x01
        sealed.ciphertext = bytes.base64EncodedString()
        #expect(throws: SealingError.self) { try sealer.unseal(sealed) }
        do { _ = try sealer.unseal(sealed) } catch { #expect(error.description.contains("failed authentication")) }

        // Relabelling a ciphertext with another key's id fails too: the id is authenticated.
        let two = Sealer(current: .random(id: "k2"), older: [sealer.current])
        var relabelled = try sealer.seal(config)
        relabelled.keyId = "k2"
        #expect(throws: SealingError.self) { try two.unseal(relabelled) }
    }

    @Test func rotationUnsealsOldRecordsAndSealsWithTheNewKey() throws {
        let old = SealingKey.random(id: "2025")
        let new = SealingKey.random(id: "2026")
        let sealedBefore = try Sealer(current: old).seal(config)
        let file = "2026:\(new.base64)\n# retired, kept until every account is re-sealed\n2025:\(old.base64)\n"
        let rotated = try Sealer(keyFileContents: file, source: "keys.txt")
        #expect(rotated.current.id == "2026")
        #expect(rotated.keyIds == ["2026", "2025"])
        #expect(try rotated.unseal(sealedBefore) == config)
        let sealedAfter = try rotated.seal(config)
        #expect(sealedAfter.keyId == "2026")
        #expect(throws: SealingError.self) { try Sealer(current: old).unseal(sealedAfter) }
    }

    @Test func keyFileWithOneBareKey() throws {
        let key = SealingKey.random()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UUID().uuidString)").path
        try (key.base64 + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let sealer = try #require(try Sealer.load(keyFile: nil, environment: [Sealer.keyFileEnvironmentVariable: path]))
        #expect(sealer.current.id == key.id)
        #expect(try Sealer.load(keyFile: nil, environment: [:]) == nil)
    }

    @Test func badKeysNameTheSourceAndHowToGenerateOne() {
        let short = Data(repeating: 1, count: 16).base64EncodedString()
        for (text, problem) in [(short, "decodes to 16 bytes, not 32"), ("not base64!", "is not valid base64")] {
            do {
                _ = try Sealer(keyFileContents: "main:\(text)", source: "/etc/keys")
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.description.contains("/etc/keys line 1"))
                #expect(error.description.contains(problem))
                #expect(error.description.contains("head -c 32 /dev/urandom | base64"))
            }
        }
        do {
            _ = try Sealer(keyFile: "/nonexistent/keys")
            Issue.record("read a missing file")
        } catch {
            #expect(error.description.contains("/nonexistent/keys"))
            #expect(error.description.contains("--sealing-key-file"))
        }
        #expect(throws: SealingError.self) { try Sealer(keyFileContents: "# nothing\n", source: "empty") }
    }
}
