import Foundation
import IntegrationCatalog
import Sealing
import SyncModel
@testable import Worker

/// A stand-in for the Sealing module: reversible, authenticates with a checksum so tampering is detected.
struct FakeSealer: ConfigSealer {
    var keyId = "k1"

    struct Tampered: Error {}

    func hasKey(id: String) -> Bool { id == keyId }

    func seal(_ config: JSONValue) throws -> SealedConfig {
        let bytes = try WireFormat.encode(config)
        let body = Data(bytes.map { $0 ^ 0x5A }).base64EncodedString()
        return SealedConfig(keyId: keyId, ciphertext: body + "." + Self.tag(bytes))
    }

    func open(_ sealed: SealedConfig) throws -> JSONValue {
        let parts = sealed.ciphertext.split(separator: ".")
        guard parts.count == 2, let data = Data(base64Encoded: String(parts[0])) else { throw Tampered() }
        let bytes = data.map { $0 ^ 0x5A }
        guard Self.tag(bytes) == parts[1] else { throw Tampered() }
        return try WireFormat.decode(JSONValue.self, from: bytes)
    }

    static func tag(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 24 - hex.count) + hex
    }
}

/// An integration whose behaviour a test scripts: emits one activity per call, or fails as told.
final class FakeIntegration: Integration, @unchecked Sendable {
    // @unchecked: `calls` and `behaviour` are only touched under `lock`.
    let key = "github"
    private let lock = NSLock()
    private var _calls: [SyncRequest] = []
    enum Behaviour { case activities(Int), needsReauth, refresh, transientThenOK(Int), permanent, invalidConfig }
    private var behaviour: Behaviour = .activities(1)

    var calls: [SyncRequest] { lock.withLock { _calls } }
    func set(_ behaviour: Behaviour) { lock.withLock { self.behaviour = behaviour } }

    func spec() -> JSONValue { ["key": "github"] }
    func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        AccountSetup(accountId: "1", config: [:], settings: [:])
    }

    func sync(_ request: SyncRequest) async throws -> SyncOutcome {
        let (n, behaviour): (Int, Behaviour) = lock.withLock {
            _calls.append(request)
            return (_calls.count, self.behaviour)
        }
        func activities(_ count: Int) -> [Activity] {
            (0..<count).map {
                Activity(
                    text: "t", sourceURL: "https://github.com/x", id: "fake:\(request.accountId):\(n):\($0)",
                    occurredAt: Date(timeIntervalSince1970: 1_700_000_000), kind: "assign", accountId: request.accountId
                )
            }
        }
        switch behaviour {
        case .activities(let count):
            return SyncOutcome(activities: activities(count), state: ["calls": .number(Double(n))])
        case .needsReauth:
            return SyncOutcome(activities: [], state: ["needsReauth": true], status: .needsReauth(reason: "401"))
        case .refresh:
            return SyncOutcome(
                activities: activities(1), state: [:],
                updatedConfig: ["access_token": "new-token", "refresh_token": "new-refresh"])
        case .transientThenOK(let failures):
            if n <= failures { throw IntegrationError(.transient, "502 from GitHub") }
            return SyncOutcome(activities: activities(1), state: [:])
        case .permanent:
            throw IntegrationError(.permanent, "cannot ever work")
        case .invalidConfig:
            throw IntegrationError(.invalidConfig, "config has no username")
        }
    }
}
