import Foundation
import SyncModel
import Testing

@Suite("Records on the wire")
struct RecordTests {
    let scheduledAt = Date(timeIntervalSince1970: 1_796_097_900)  // 2026-12-01T04:05:00Z

    @Test("a job id is deterministic: the same tick gives the same id")
    func jobIdIsDeterministic() throws {
        let a = SyncJob(accountId: "42", integration: "github", scheduledAt: scheduledAt)
        let b = SyncJob(accountId: "42", integration: "github", scheduledAt: scheduledAt, attempt: 2)
        #expect(a.jobId == "42@2026-12-01T04:05:00Z")
        #expect(a.jobId == b.jobId)
    }

    @Test("a job round-trips and keeps the shape workers and docs expect")
    func jobRoundTrip() throws {
        let job = SyncJob(
            accountId: "42", integration: "github", scheduledAt: scheduledAt,
            since: scheduledAt.addingTimeInterval(-3600))
        let bytes = try WireFormat.encode(job)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains(#""type":"sync""#))
        #expect(text.contains(#""scheduledAt":"2026-12-01T04:05:00Z""#))
        #expect(!text.contains("sealedConfig"), "a job carries no secret")
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

    @Test("a dead letter that keeps a prefix says so in its value and headers, with the whole value's size and digest")
    func truncatedDeadLetter() throws {
        let letter = DeadLetter(
            reason: "too large", code: "too_large", originalTopic: "activity-sync.jobs", originalPartition: 3,
            originalOffset: 17, originalKey: "42", originalValuePrefix: Array("{\"ty".utf8), originalSize: 2_000_000,
            originalSHA256: "82fa05417c03925cb7e8fd2bc2e9f2e2a1c8c421427ccdba1ab0091261e3a840", failedAt: scheduledAt,
            workerId: "w1")
        #expect(letter.isTruncated)
        let text = String(decoding: try letter.messageBytes(), as: UTF8.self)
        #expect(text.contains(#""originalValueTruncated":true"#))
        #expect(text.contains(#""originalSize":2000000"#))
        #expect(text.contains(#""originalSHA256":"82fa05417c03925cb7e8fd2bc2e9f2e2a1c8c421427ccdba1ab0091261e3a840""#))
        let decoded = try WireFormat.decode(Envelope<DeadLetter>.self, from: try letter.messageBytes()).data
        #expect(decoded == letter)
        let headers = Dictionary(letter.headers) { first, _ in first }
        #expect(headers[DeadLetterHeader.originalSize] == "2000000")
        #expect(headers[DeadLetterHeader.originalSHA256] == letter.originalSHA256)
        #expect(headers[DeadLetterHeader.truncated] == "true")
    }

    @Test("a whole-value dead letter says it is not truncated")
    func wholeDeadLetter() throws {
        let letter = DeadLetter(
            reason: "not JSON", code: "not_json", originalTopic: "activity-sync.jobs", originalPartition: 3,
            originalOffset: 17, originalKey: "42", originalValue: Array("{oops".utf8), failedAt: scheduledAt,
            workerId: "w1")
        #expect(!letter.isTruncated)
        #expect(letter.originalSize == 5)
        let headers = Dictionary(letter.headers) { first, _ in first }
        #expect(headers[DeadLetterHeader.truncated] == "false")
        #expect(headers[DeadLetterHeader.originalSize] == "5")
    }

    @Test("a dead letter written before sizes and digests were recorded still decodes")
    func olderDeadLetterDecodes() throws {
        let text =
            #"{"data":{"code":"not_json","failedAt":"2026-12-01T04:05:23.250Z","originalKey":"583231","originalOffset":1234,"originalPartition":7,"originalTopic":"activity-sync.jobs","originalValueBase64":"e29vcHM=","reason":"not JSON","workerId":"worker-0"},"type":"dead_letter"}"#
        let letter = try WireFormat.decode(Envelope<DeadLetter>.self, from: Array(text.utf8)).data
        #expect(!letter.isTruncated)
        #expect(letter.originalSize == nil && letter.originalSHA256 == nil)
        #expect(Data(base64Encoded: letter.originalValueBase64) == Data("{oops".utf8))
    }

    @Test("an activity's truncated marker is written only when set")
    func activityTruncatedMarker() throws {
        var activity = Activity(
            text: "t", sourceURL: "https://github.com/o/r", id: "github:event:1", occurredAt: scheduledAt,
            kind: "pr_opened", accountId: "42")
        #expect(!String(decoding: try activity.messageBytes(), as: UTF8.self).contains("truncated"))
        activity.truncated = true
        #expect(String(decoding: try activity.messageBytes(), as: UTF8.self).contains(#""truncated":true"#))
    }
}

/// Which record a needs_reauth status was judged on, and what an old status (without it) means.
@Suite("Account versions in statuses")
struct AccountVersionTests {
    let record = Array(#"{"type":"account","data":{"accountId":"42"}}"#.utf8)

    @Test("a needs_reauth status holds jobs only for the record version it names; an old one without it never")
    func holdsOnlyItsRecord() throws {
        let version = AccountVersion(recordBytes: record)
        #expect(AccountVersion(version.description) == version)
        #expect(version.description.count == 16)
        #expect(AccountVersion("not-a-version") == nil)
        #expect(version != AccountVersion(recordBytes: record + [32]))
        let old = try WireFormat.decode(
            Envelope<AccountStatus>.self,
            from: Array(
                #"{"type":"status","data":{"accountId":"42","integration":"github","status":"needs_reauth","at":"2026-12-01T04:05:00Z"}}"#
                    .utf8)
        ).data
        #expect(old.accountVersion == nil)
        #expect(!old.holdsJobs(ofRecord: version))
        var judged = old
        judged.accountVersion = version.description
        #expect(judged.holdsJobs(ofRecord: version))
        #expect(!judged.holdsJobs(ofRecord: AccountVersion(recordBytes: record + [32])))
        #expect(!judged.holdsJobs(ofRecord: nil))
        judged.status = .failing
        #expect(!judged.holdsJobs(ofRecord: version))
        // Written only when known: an old reader's schema (additionalProperties: false) still accepts the rest.
        #expect(!String(decoding: try old.messageBytes(), as: UTF8.self).contains("accountVersion"))
    }
}
