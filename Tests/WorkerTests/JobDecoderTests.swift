import Foundation
import GitHub
import Logging
import Sealing
import SyncModel
import Testing
@testable import Worker

/// Poison jobs, one per kind, shared with the Kafka-backed test that sends them through a worker.
enum PoisonJobs {
    static let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
    static let sealer = FakeSealer()

    static func validJob(account: String = "acct-1", token: String = "tok-123") throws -> SyncJob {
        SyncJob(
            accountId: account, integration: "github", scheduledAt: now,
            sealedConfig: try sealer.seal(["access_token": .string(token)]))
    }

    static func object(_ edit: (inout [String: JSONValue]) throws -> Void) throws -> [UInt8] {
        guard case .object(var object) = try JSONValue(encoding: try validJob()) else { fatalError() }
        try edit(&object)
        return try WireFormat.encode(JSONValue.object(object))
    }

    /// (expected kind, key, value)
    static func all() throws -> [(PoisonKind, String?, [UInt8]?)] {
        let key = "acct-1"
        var tampered = try validJob().sealedConfig
        tampered.ciphertext = "A" + tampered.ciphertext.dropFirst()
        return [
            (.emptyValue, key, nil),
            (.notJSON, key, Array("{\"type\": \"sync\",".utf8)),
            (.notObject, key, Array("[1,2,3]".utf8)),
            (.missingField, key, try object { $0["accountId"] = nil }),
            (.wrongFieldType, key, try object { $0["attempt"] = "one" }),
            (.wrongFieldType, key, try object { $0["scheduledAt"] = 12 }),
            (.unsupportedType, key, try object { $0["type"] = "delete" }),
            (.emptyJobId, key, try object { $0["jobId"] = "" }),
            (.emptyAccountId, "", try object { $0["accountId"] = "" }),
            (.keyMismatch, "someone-else", try object { _ in }),
            (.keyMismatch, nil, try object { _ in }),
            (.unknownIntegration, key, try object { $0["integration"] = "gitlab" }),
            (.scheduledAtOutOfRange, key, try object { $0["scheduledAt"] = "1971-01-01T00:00:00Z" }),
            (.scheduledAtOutOfRange, key, try object { $0["scheduledAt"] = "2999-01-01T00:00:00Z" }),
            (.invalidAttempt, key, try object { $0["attempt"] = 0 }),
            (.unsupportedAlgorithm, key, try object { $0["sealedConfig"]!.set("algorithm", "ROT13") }),
            (.tooLarge, key, Array(repeating: UInt8(ascii: " "), count: (1 << 20) + 1)),
            (.unknownSealingKey, key, try object { $0["sealedConfig"]!.set("keyId", "retired-key") }),
            (.unsealFailed, key, try object { $0["sealedConfig"] = try JSONValue(encoding: tampered) }),
            (.configNotObject, key, try object { $0["sealedConfig"] = try JSONValue(encoding: sealer.seal("just a string")) }),
        ]
    }
}

extension JSONValue {
    mutating func set(_ key: String, _ value: JSONValue) {
        if case .object(var object) = self {
            object[key] = value
            self = .object(object)
        }
    }
}

@Suite struct JobDecoderTests {
    let decoder = JobDecoder(integrations: ["github"])

    @Test func aValidJobDecodesAndOpens() throws {
        let job = try PoisonJobs.validJob()
        let bytes = try WireFormat.encode(job)
        let decoded = try decoder.decode(key: Array("acct-1".utf8), value: bytes).get()
        #expect(decoded.jobId == job.jobId)
        #expect(decoded.sealedConfig == job.sealedConfig)
        #expect(abs(decoded.scheduledAt.timeIntervalSince(job.scheduledAt)) < 0.001)
        let config = try PoisonJobs.sealer.openConfig(decoded.sealedConfig).get()
        #expect(config["access_token"] == "tok-123")
    }

    @Test func everyPoisonKindIsClassifiedWithAReason() throws {
        var kinds: Set<PoisonKind> = []
        for (expected, key, value) in try PoisonJobs.all() {
            let result = decoder.decode(key: key.map { Array($0.utf8) }, value: value, now: PoisonJobs.now)
                .flatMap { PoisonJobs.sealer.openConfig($0.sealedConfig) }
            guard case .failure(let poison) = result else {
                Issue.record("expected \(expected), the job was accepted")
                continue
            }
            #expect(poison.kind == expected, "\(poison)")
            #expect(!poison.reason.isEmpty)
            #expect(!poison.reason.contains("tok-123"))
            kinds.insert(poison.kind)
        }
        #expect(kinds.count >= 10, "at least ten distinct poison kinds")
    }

    @Test func resyncJobsKeepSince() throws {
        var job = try PoisonJobs.validJob()
        job.since = PoisonJobs.now - 3600
        let decoded = try decoder.decode(key: Array("acct-1".utf8), value: try WireFormat.encode(job)).get()
        #expect(decoded.since != nil)
    }

    @Test func aConfigWithoutATokenIsTheIntegrationsToRefuse() async throws {
        var job = try PoisonJobs.validJob()
        job.sealedConfig = try PoisonJobs.sealer.seal(["refresh_token": "r"])
        #expect((try? PoisonJobs.sealer.openConfig(job.sealedConfig).get()) != nil, "the sealing is fine")
        let github = GitHubIntegration(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let processor = JobProcessor(
            integrations: IntegrationRegistry([github]), sealer: PoisonJobs.sealer, topics: TopicNames(), workerId: "w")
        let origin = JobOrigin(topic: "activity-sync.jobs", partition: 0, offset: 1, key: Array("acct-1".utf8), value: [1])
        let result = await processor.process(job, origin: origin, state: nil)
        #expect(result.outcome == .deadLettered)
        #expect(result.poison?.kind == .invalidConfig)
        #expect(result.poison?.reason.contains("access_token") == true)
    }
}
