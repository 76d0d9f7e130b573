import Foundation
import SyncModel
import Testing

@Suite("Records on the wire")
struct RecordTests {
    let scheduledAt = Date(timeIntervalSince1970: 1_796_097_900)  // 2026-12-01T04:05:00Z

    @Test("a job id is deterministic: the same tick gives the same id")
    func jobIdIsDeterministic() throws {
        let sealed = SealedConfig(keyId: "k1", ciphertext: "AAAA")
        let a = SyncJob(accountId: "42", integration: "github", scheduledAt: scheduledAt, sealedConfig: sealed)
        let b = SyncJob(accountId: "42", integration: "github", scheduledAt: scheduledAt, attempt: 2, sealedConfig: sealed)
        #expect(a.jobId == "42@2026-12-01T04:05:00Z")
        #expect(a.jobId == b.jobId)
    }

    @Test("a job round-trips and keeps the shape workers and docs expect")
    func jobRoundTrip() throws {
        let job = SyncJob(
            accountId: "42", integration: "github", scheduledAt: scheduledAt,
            since: scheduledAt.addingTimeInterval(-3600), sealedConfig: SealedConfig(keyId: "k1", ciphertext: "AAAA"))
        let bytes = try WireFormat.encode(job)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains(#""type":"sync""#))
        #expect(text.contains(#""scheduledAt":"2026-12-01T04:05:00Z""#))
        #expect(try WireFormat.decode(SyncJob.self, from: bytes) == job)
    }

    @Test("an activity keeps the reference envelope {type, data:{text, sourceURL}}")
    func activityEnvelope() throws {
        let activity = Activity(
            text: "octocat created PR #7: Fix", sourceURL: "https://github.com/o/r/pull/7", id: "github:event:1",
            occurredAt: scheduledAt, kind: "pr_opened", repo: "o/r", number: 7, actor: "octocat", accountId: "42")
        let json = try JSONSerialization.jsonObject(with: Data(try activity.messageBytes())) as! [String: Any]
        #expect(json["type"] as? String == "activity")
        let data = json["data"] as! [String: Any]
        #expect(data["text"] as? String == "octocat created PR #7: Fix")
        #expect(data["sourceURL"] as? String == "https://github.com/o/r/pull/7")
        #expect(data["id"] as? String == "github:event:1")
    }

    @Test("dates with milliseconds survive, whole seconds print without them")
    func dates() throws {
        #expect(WireFormat.formatDate(scheduledAt) == "2026-12-01T04:05:00Z")
        let withMillis = scheduledAt.addingTimeInterval(0.25)
        #expect(WireFormat.formatDate(withMillis) == "2026-12-01T04:05:00.250Z")
        #expect(WireFormat.parseDate("2026-12-01T04:05:00.250Z") == withMillis)
        #expect(WireFormat.parseDate("2026-12-01T05:05:00+01:00") == scheduledAt)
        #expect(WireFormat.parseDate("yesterday") == nil)
    }

    @Test("an account record decodes only from an account envelope")
    func accountEnvelope() throws {
        let record = AccountRecord(
            accountId: "42", integration: "github", settings: AccountSettings(username: "octocat"),
            sealedConfig: SealedConfig(keyId: "k1", ciphertext: "AAAA"), updatedAt: scheduledAt)
        #expect(try AccountRecord.decodeMessage(try record.messageBytes()) == record)
        let wrong = try WireFormat.encode(Envelope(type: "state", data: record))
        #expect(throws: RecordError.self) { try AccountRecord.decodeMessage(wrong) }
    }

    @Test("JSON values keep integers as integers")
    func jsonIntegers() throws {
        let value: JSONValue = ["id": 1_296_269, "name": "x", "ok": true, "none": nil]
        let text = String(decoding: try WireFormat.encode(value), as: UTF8.self)
        #expect(text == #"{"id":1296269,"name":"x","none":null,"ok":true}"#)
    }

    @Test("JSON values decode each kind as itself: strings never become numbers or bools, nor the reverse")
    func jsonKinds() throws {
        let text = #"{"b":true,"n":12,"d":0.5,"s":"true","t":"12","z":null,"a":["x",1,false],"o":{"k":"v"}}"#
        let value = try WireFormat.decode(JSONValue.self, from: Array(text.utf8))
        #expect(value["b"] == .bool(true))
        #expect(value["n"] == .number(12))
        #expect(value["d"] == .number(0.5))
        #expect(value["s"] == .string("true"))
        #expect(value["t"] == .string("12"))
        #expect(value["z"] == .null)
        #expect(value["a"] == .array([.string("x"), .number(1), .bool(false)]))
        #expect(value["o"] == .object(["k": .string("v")]))
    }

    @Test("a dead letter keeps the original bytes and says why in headers")
    func deadLetter() throws {
        let letter = DeadLetter(
            reason: "not JSON", code: "malformed_json", originalTopic: "activity-sync.jobs", originalPartition: 3,
            originalOffset: 17, originalKey: "42", originalValue: Array("{oops".utf8), failedAt: scheduledAt,
            workerId: "w1")
        #expect(Data(base64Encoded: letter.originalValueBase64) == Data("{oops".utf8))
        #expect(letter.headers.contains { $0 == (DeadLetterHeader.reason, "not JSON") })
    }
}
