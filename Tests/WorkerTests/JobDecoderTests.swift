import Foundation
import GitHub
import IntegrationCatalog
import Logging
import Sealing
import SyncModel
import Testing
@testable import Worker

/// Poison jobs, one per kind, shared with the Kafka-backed test that sends them through a worker.
enum PoisonJobs {
    static let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
    static let sealer = FakeSealer()

    static func validJob(account: String = "acct-1") -> SyncJob {
        SyncJob(accountId: account, integration: "github", scheduledAt: now)
    }

    /// The account record a job of `account` runs with.
    static func account(_ account: String = "acct-1", token: String = "tok-123", integration: String = "github")
        throws -> AccountRecord
    {
        AccountRecord(
            accountId: account, integration: integration, settings: AccountSettings(),
            sealedConfig: try sealer.seal(["access_token": .string(token)]), updatedAt: now)
    }

    static func object(_ edit: (inout [String: JSONValue]) throws -> Void) throws -> [UInt8] {
        guard case .object(var object) = try JSONValue(encoding: validJob()) else { fatalError() }
        try edit(&object)
        return try WireFormat.encode(JSONValue.object(object))
    }

    /// Jobs that are poison by their own bytes: (expected kind, key, value).
    static func all() throws -> [(PoisonKind, String?, [UInt8]?)] {
        let key = "acct-1"
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
            (.tooLarge, key, Array(repeating: UInt8(ascii: " "), count: (1 << 20) + 1)),
        ]
    }

    /// Valid jobs whose account records make them poison: (expected kind, the account's record or nil when it is
    /// not on the accounts topic, the job).
    static func accountPoisons() throws -> [(PoisonKind, AccountRecord?, SyncJob)] {
        func withSealed(_ id: String, _ edit: (inout SealedConfig) throws -> Void) throws -> AccountRecord {
            var record = try account(id)
            try edit(&record.sealedConfig)
            return record
        }
        return [
            (.unknownAccount, nil, validJob(account: "acct-never-added")),
            (.integrationMismatch, try account("acct-other", integration: "gitlab"), validJob(account: "acct-other")),
            (
                .unsupportedAlgorithm, try withSealed("acct-rot13") { $0.algorithm = "ROT13" },
                validJob(account: "acct-rot13")
            ),
            (
                .unknownSealingKey, try withSealed("acct-retired") { $0.keyId = "retired-key" },
                validJob(account: "acct-retired")
            ),
            (
                .unsealFailed, try withSealed("acct-tampered") { $0.ciphertext = "A" + $0.ciphertext.dropFirst() },
                validJob(account: "acct-tampered")
            ),
            (
                .configNotObject, try withSealed("acct-string") { $0 = try sealer.seal("just a string") },
                validJob(account: "acct-string")
            ),
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

    @Test func aValidJobDecodes() throws {
        let job = PoisonJobs.validJob()
        let bytes = try WireFormat.encode(job)
        let decoded = try decoder.decode(key: Array("acct-1".utf8), value: bytes).get()
        #expect(decoded.jobId == job.jobId)
        #expect(abs(decoded.scheduledAt.timeIntervalSince(job.scheduledAt)) < 0.001)
    }

    /// Jobs from before jobs stopped carrying secrets, still in the topic during an upgrade, decode; their
    /// `sealedConfig` is not read (the account's record is). The shape other producers may send — no `attempt` —
    /// is a first attempt.
    @Test func anOldJobWithASealedConfigAndAJobWithoutAttemptDecode() throws {
        let old = try PoisonJobs.object {
            $0["sealedConfig"] = try JSONValue(encoding: PoisonJobs.sealer.seal(["access_token": "tok-old"]))
        }
        #expect(try decoder.decode(key: Array("acct-1".utf8), value: old).get().jobId == PoisonJobs.validJob().jobId)
        let minimal = try PoisonJobs.object { $0["attempt"] = nil }
        #expect(try decoder.decode(key: Array("acct-1".utf8), value: minimal).get().attempt == 1)
    }

    @Test func everyPoisonKindIsClassifiedWithAReason() throws {
        var kinds: Set<PoisonKind> = []
        for (expected, key, value) in try PoisonJobs.all() {
            let result = decoder.decode(key: key.map { Array($0.utf8) }, value: value, now: PoisonJobs.now)
            guard case .failure(let poison) = result else {
                Issue.record("expected \(expected), the job was accepted")
                continue
            }
            #expect(poison.kind == expected, "\(poison)")
            #expect(!poison.reason.isEmpty)
            kinds.insert(poison.kind)
        }
        #expect(kinds.count >= 10, "at least ten distinct poison kinds")
    }

    /// An account record that cannot run its jobs makes them poison, with a reason that never holds the token.
    @Test func accountRecordsThatCannotRunAJobDeadLetterIt() async throws {
        let processor = JobProcessor(
            integrations: IntegrationRegistry([CountingIntegration()]), sealer: PoisonJobs.sealer, topics: TopicNames(),
            workerId: "w")
        for (expected, record, job) in try PoisonJobs.accountPoisons() {
            let origin = JobOrigin(
                topic: "activity-sync.jobs", partition: 0, offset: 1, key: Array(job.accountId.utf8), value: [1])
            let lookup: AccountLookup = record.map { .found($0) } ?? .unknown("account \(job.accountId) is not there")
            let result = await processor.process(job, origin: origin, account: lookup, state: nil)
            #expect(result.outcome == .deadLettered, "\(expected)")
            #expect(result.poison?.kind == expected, "\(String(describing: result.poison))")
            #expect(result.poison?.reason.contains("tok-123") == false)
        }
    }

    @Test func resyncJobsKeepSince() throws {
        var job = PoisonJobs.validJob()
        job.since = PoisonJobs.now - 3600
        let decoded = try decoder.decode(key: Array("acct-1".utf8), value: try WireFormat.encode(job)).get()
        #expect(decoded.since != nil)
    }

    @Test func aConfigWithoutATokenIsTheIntegrationsToRefuse() async throws {
        let job = PoisonJobs.validJob()
        var account = try PoisonJobs.account()
        account.sealedConfig = try PoisonJobs.sealer.seal(["refresh_token": "r"])
        #expect((try? PoisonJobs.sealer.openConfig(account.sealedConfig).get()) != nil, "the sealing is fine")
        let github = GitHubIntegration(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let processor = JobProcessor(
            integrations: IntegrationRegistry([github]), sealer: PoisonJobs.sealer, topics: TopicNames(), workerId: "w")
        let origin = JobOrigin(
            topic: "activity-sync.jobs", partition: 0, offset: 1, key: Array("acct-1".utf8), value: [1])
        let result = await processor.process(job, origin: origin, account: .found(account), state: nil)
        #expect(result.outcome == .deadLettered)
        #expect(result.poison?.kind == .invalidConfig)
        #expect(result.poison?.reason.contains("access_token") == true)
    }
}
