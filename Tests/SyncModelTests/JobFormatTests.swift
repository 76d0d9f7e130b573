import Foundation
import SyncModel
import Testing

/// The jobs topic's format: what the scheduler and `enqueue` write is what a worker reads, byte for byte.
@Suite("Job format")
struct JobFormatTests {
    static let tick = Date(timeIntervalSince1970: 1_796_097_900)  // 2026-12-01T04:05:00Z
    static let sealed = SealedConfig(keyId: "k1", ciphertext: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj/+x=")

    /// A job's bytes as committed; a change here breaks every consumer that is not ours (docs/topics.md). No
    /// secret: the worker reads the account's sealed config from the accounts topic.
    static let golden =
        #"{"accountId":"42","attempt":1,"integration":"github","jobId":"42@2026-12-01T04:05:00Z","#
        + #""scheduledAt":"2026-12-01T04:05:00Z","type":"sync"}"#

    @Test func aTickJobHasTheCommittedBytesAndDecodesBack() throws {
        var encoder = JobEncoder()
        let job = SyncJob(accountId: "42", integration: "github", scheduledAt: Self.tick)
        let bytes = try encoder.encode(job)
        #expect(String(decoding: bytes, as: UTF8.self) == Self.golden)
        #expect(
            try encoder.encodeTick(
                accountId: "42", integration: "github", scheduledAt: Self.tick) == bytes)
        #expect(try WireFormat.encode(job) == bytes)
        let decoded = try JobDecoder(integrations: ["github"]).decode(
            key: Array("42".utf8), value: bytes, now: Self.tick
        )
        .get()
        #expect(decoded == job)
    }

    @Test(arguments: ["acct-1", "user/with/slashes", "quote\"d", "tab\there", "ünïcødé-ÄÖ", "back\\slash"])
    func encoderAndDecoderAgree(accountId: String) throws {
        let decoder = JobDecoder(integrations: ["github"])
        for scheduledAt in [Self.tick, Self.tick.addingTimeInterval(0.25)] {
            var encoder = JobEncoder()
            let job = SyncJob(
                accountId: accountId, integration: "github", scheduledAt: scheduledAt)
            let bytes = try encoder.encode(job)
            #expect(bytes == (try WireFormat.encode(job)))
            #expect(
                try encoder.encodeTick(
                    accountId: accountId, integration: "github", scheduledAt: scheduledAt)
                    == bytes)
            #expect(try decoder.decode(key: Array(accountId.utf8), value: bytes, now: scheduledAt).get() == job)
        }
        let account = AccountRecord(
            accountId: accountId, integration: "github", settings: AccountSettings(), sealedConfig: Self.sealed,
            updatedAt: Self.tick)
        let resync = SyncJob(resyncing: account, since: Self.tick.addingTimeInterval(-86_400), now: Self.tick)
        var encoder = JobEncoder()
        let bytes = try encoder.encode(resync)
        #expect(bytes == (try WireFormat.encode(resync)))
        let decoded = try decoder.decode(key: Array(accountId.utf8), value: bytes, now: Self.tick).get()
        #expect(decoded.jobId == resync.jobId && decoded.since == resync.since)
        #expect(abs(decoded.scheduledAt.timeIntervalSince(resync.scheduledAt)) < 0.0005)
    }

    @Test func aResyncNeverTakesATicksId() {
        let account = AccountRecord(
            accountId: "42", integration: "github", settings: AccountSettings(), sealedConfig: Self.sealed,
            updatedAt: Self.tick)
        let onTheSecond = SyncJob(resyncing: account, since: Self.tick, now: Self.tick)
        #expect(onTheSecond.jobId != SyncJob(account: account, tick: Self.tick).jobId)
        #expect(onTheSecond.jobId == "42@2026-12-01T04:05:00.001Z")
        #expect(WireFormat.formatDate(Self.tick.addingTimeInterval(0.047)) == "2026-12-01T04:05:00.047Z")
        #expect(WireFormat.formatDate(Self.tick.addingTimeInterval(0.5)) == "2026-12-01T04:05:00.500Z")
        #expect(SyncJob(account: account, tick: Self.tick).jobId == "42@2026-12-01T04:05:00Z")
    }
}
