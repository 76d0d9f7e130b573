import Foundation
import IntegrationCatalog
import MetricsTestKit
import Sealing
import SyncModel
import Testing
@testable import Worker

/// Nothing on input may stop a worker: every record a job produces fits in a Kafka message, and what cannot be
/// written is said, not dropped. A record above `message.max.bytes` fails its transaction on every retry.
@Suite struct RecordSizeLimitTests {
    static let limit = 1_000_000
    let decoder = JobDecoder(integrations: ["github"])
    let metrics = TestMetrics()

    /// What `activity_sync_worker_{dropped,truncated}_records_total{kind}` counted in this test.
    func counted(_ what: String, _ kind: String) -> Int64 {
        metrics.counters(label: "activity_sync_worker_\(what)_records_total", dimensions: [("kind", kind)])
            .map(\.totalValue).reduce(0, +)
    }

    func processor(
        _ integration: any Integration = ScriptedIntegration { _ in SyncOutcome(activities: [], state: [:]) }
    )
        -> JobProcessor
    {
        var processor = JobProcessor(
            integrations: IntegrationRegistry([integration]), sealer: FakeSealer(), topics: TopicNames(),
            workerId: "w1")
        processor.retryDelay = .milliseconds(1)
        processor.metricsFactory = metrics
        #expect(processor.maxRecordBytes == Self.limit, "the default is librdkafka's message.max.bytes")
        return processor
    }

    func origin(value: [UInt8]) -> JobOrigin {
        JobOrigin(topic: "activity-sync.jobs", partition: 3, offset: 7, key: Array("acct-1".utf8), value: value)
    }

    /// Reproducible input whose SHA-256 is known: `python3 -c "import hashlib; print(hashlib.sha256(bytes(i % 251
    /// for i in range(N))).hexdigest())"`.
    static func pattern(_ count: Int) -> [UInt8] { (0..<count).map { UInt8($0 % 251) } }

    /// What librdkafka weighs against `message.max.bytes`, less the record's framing.
    func payloadSize(_ record: OutgoingRecord) -> Int {
        (record.key?.count ?? 0) + (record.value?.count ?? 0)
            + record.headers.reduce(0) { $0 + $1.key.utf8.count + $1.value.count }
    }

    func headers(_ record: OutgoingRecord) -> [String: String] {
        Dictionary(record.headers.map { ($0.key, String(decoding: $0.value, as: UTF8.self)) }) { first, _ in first }
    }

    func letter(_ record: OutgoingRecord) throws -> DeadLetter {
        try WireFormat.decode(Envelope<DeadLetter>.self, from: record.value ?? []).data
    }

    func job(_ outcome: @escaping @Sendable (SyncRequest) throws -> SyncOutcome) async throws -> JobResult {
        let job = PoisonJobs.validJob()
        let value = try WireFormat.encode(job)
        return await processor(ScriptedIntegration(outcome)).process(
            job, origin: origin(value: value), account: .found(try PoisonJobs.account()), state: nil)
    }

    // MARK: - Dead letters

    @Test(
        "a poison job too large for its own dead letter is kept as a prefix, with its size and SHA-256",
        arguments: zip(
            [900_000, 2_000_000],
            [
                "ed855898ab94ea51ab5ee302a2d7fe6d8aa87087ac8d36265bd365a22e84af37",
                "82fa05417c03925cb7e8fd2bc2e9f2e2a1c8c421427ccdba1ab0091261e3a840",
            ]))
    func oversizedPoisonJobsGiveADeadLetterThatFits(size: Int, sha256: String) throws {
        let value = Self.pattern(size)
        guard case .failure(let poison) = decoder.decode(key: Array("acct-1".utf8), value: value) else {
            Issue.record("\(size) bytes of binary were accepted as a job")
            return
        }
        let result = processor().deadLetter(poison, origin: origin(value: value))
        #expect(result.outcome == .deadLettered)
        let record = try #require(result.records.first)
        #expect(result.records.count == 1)
        #expect(record.topic == "activity-sync.jobs.dlq")
        #expect(payloadSize(record) + OutgoingRecord.overheadAllowance <= Self.limit, "fits in message.max.bytes")

        let headers = headers(record)
        #expect(headers[DeadLetterHeader.originalSize] == String(size))
        #expect(headers[DeadLetterHeader.originalSHA256] == sha256)
        #expect(headers[DeadLetterHeader.truncated] == "true")
        #expect(headers[DeadLetterHeader.code] == poison.kind.rawValue)

        let letter = try letter(record)
        #expect(letter.originalValueTruncated == true)
        #expect(letter.originalSize == size)
        #expect(letter.originalSHA256 == sha256)
        let kept = try #require(Data(base64Encoded: letter.originalValueBase64))
        #expect(kept.count > 700_000, "keeps as much of the job as fits, \(kept.count) bytes")
        #expect(Array(kept) == Array(value.prefix(kept.count)), "the kept bytes are the job's first bytes")
        #expect(counted("truncated", "dead_letter") == 1)
    }

    @Test("a small poison job keeps its whole value, and says so")
    func smallPoisonJobsAreKeptWhole() throws {
        let value = Array("{oops".utf8)
        let result = processor().deadLetter(
            Poison(.notJSON, "the value is not valid JSON"), origin: origin(value: value))
        let record = try #require(result.records.first)
        let headers = headers(record)
        #expect(headers[DeadLetterHeader.originalSize] == "5")
        #expect(
            headers[DeadLetterHeader.originalSHA256]
                == "935aaf3a54c0648c74df48a8025f20086019843f5b9fbffe5540b9cba0edcc97")
        #expect(headers[DeadLetterHeader.truncated] == "false")
        let letter = try letter(record)
        #expect(letter.originalValueTruncated == false)
        #expect(Data(base64Encoded: letter.originalValueBase64) == Data(value))
        #expect(letter.originalKey == "acct-1")
        #expect(counted("truncated", "dead_letter") == 0)
    }

    @Test("a smaller maxRecordBytes is honoured too")
    func theLimitIsConfigurable() throws {
        var processor = processor()
        processor.maxRecordBytes = 10_000
        let result = processor.deadLetter(Poison(.notJSON, "not JSON"), origin: origin(value: Self.pattern(50_000)))
        let record = try #require(result.records.first)
        #expect(payloadSize(record) + OutgoingRecord.overheadAllowance <= 10_000)
        #expect(try letter(record).isTruncated)
    }

    @Test("a 100 KB failure message is cut before it reaches the dead letter's value and header")
    func longReasonsAreBounded() async throws {
        let message = String(repeating: "é", count: 50_000)  // 100,000 UTF-8 bytes
        let result = try await job { _ in throw IntegrationError(.permanent, message) }
        #expect(result.outcome == .deadLettered)
        let record = try #require(result.records.first)
        let letter = try letter(record)
        #expect(letter.reason.utf8.count <= JobProcessor.maxReasonBytes)
        #expect(letter.reason.hasPrefix("éééé") && letter.reason.hasSuffix("…"))
        let header = try #require(headers(record)[DeadLetterHeader.reason])
        #expect(header.utf8.count <= JobProcessor.maxReasonBytes)
    }

    // MARK: - Output of a sync

    @Test("an activity whose text is too large is written with a cut text, marked truncated")
    func oversizedActivityTextIsCut() async throws {
        // Quotes and newlines are escaped in JSON: the cut must allow for that.
        let text = String(repeating: "octocat said \"ship it\"\n é ", count: 60_000)  // ~1.6 MB
        let big = Activity(
            text: text, sourceURL: "https://github.com/o/r/pull/1", id: "github:event:1",
            occurredAt: PoisonJobs.now, kind: "pr_comment", repo: "o/r", number: 1, actor: "octocat",
            accountId: "acct-1")
        var small = big
        small.text = "octocat opened PR #2"
        small.id = "github:event:2"
        let both = [big, small]
        let result = try await job { _ in SyncOutcome(activities: both, state: ["cursor": 1]) }

        #expect(result.outcome == .synced)
        #expect(result.records.count == 2)
        let record = try #require(result.records.first)
        #expect(payloadSize(record) + OutgoingRecord.overheadAllowance <= Self.limit)
        #expect((record.value?.count ?? 0) > 900_000, "keeps as much text as fits")
        let written = try WireFormat.decode(Envelope<Activity>.self, from: record.value ?? []).data
        #expect(written.truncated == true)
        #expect(written.text.hasSuffix("…"))
        #expect(text.hasPrefix(written.text.dropLast()))
        #expect(written.id == big.id && written.sourceURL == big.sourceURL && written.kind == big.kind)
        #expect(written.repo == big.repo && written.number == big.number && written.actor == big.actor)
        #expect(headers(record)["ce_id"] == big.id)

        let untouched = try WireFormat.decode(Envelope<Activity>.self, from: result.records[1].value ?? []).data
        #expect(untouched == small, "a record that fits is not marked")
        #expect(result.stateRecords.count == 1, "the sync's progress is saved")
        #expect(counted("truncated", "activity") == 1)
        #expect(counted("dropped", "activity") == 0)
    }

    @Test("an activity that cannot fit even without its text is left out, logged and counted; the job goes on")
    func activityThatCannotFitIsCounted() async throws {
        // The id is also the ce_id header: 600 KB twice is more than a record may hold, whatever the text.
        let hopeless = Activity(
            text: "t", sourceURL: "https://github.com/o/r",
            id: "github:event:" + String(repeating: "9", count: 600_000),
            occurredAt: PoisonJobs.now, kind: "pr_opened", accountId: "acct-1")
        let fine = Activity(
            text: "t", sourceURL: "https://github.com/o/r", id: "github:event:2", occurredAt: PoisonJobs.now,
            kind: "pr_opened", accountId: "acct-1")
        let both = [hopeless, fine]
        let result = try await job { _ in SyncOutcome(activities: both, state: ["cursor": 3]) }

        #expect(result.outcome == .synced)
        #expect(result.records.count == 1)
        #expect(result.records.first.map(headers)?["ce_id"] == "github:event:2")
        #expect(result.activityCount == 1)
        #expect(result.stateRecords.count == 1)
        #expect(counted("dropped", "activity") == 1)
    }

    @Test("a state record too large to write dead-letters the job, marks the account failing, keeps the old state")
    func oversizedStateDeadLettersTheJob() async throws {
        let activity = Activity(
            text: "t", sourceURL: "https://github.com/o/r", id: "github:event:1", occurredAt: PoisonJobs.now,
            kind: "pr_opened", accountId: "acct-1")
        let huge = JSONValue.string(String(repeating: "x", count: 1_200_000))
        let result = try await job { _ in SyncOutcome(activities: [activity], state: ["seen": huge]) }

        #expect(result.outcome == .deadLettered)
        #expect(result.stateRecords.count == 0)
        #expect(result.newState == nil, "the account's state does not advance")
        #expect(result.records.count == 1, "no activity without the state that accounts for it")
        let record = try #require(result.records.first)
        #expect(record.topic == "activity-sync.jobs.dlq")
        #expect(payloadSize(record) + OutgoingRecord.overheadAllowance <= Self.limit)
        #expect(headers(record)[DeadLetterHeader.code] == "output_too_large")
        let reason = try letter(record).reason
        #expect(reason.contains("state record of ") && reason.contains("exceeds maxRecordBytes 1000000"), "\(reason)")
        #expect(result.status?.status == .failing)
        #expect(result.status?.reason?.contains("dead-letter") == true)
        #expect(counted("dropped", "state") == 1)
    }

    @Test("a token pair refreshed by a job whose state is too large is still saved, beside the previous state")
    func refreshedPairSurvivesAnOversizedState() async throws {
        let job = PoisonJobs.validJob()
        let previous = StateRecord(
            accountId: "acct-1", integration: "github",
            lastJob: JobMarker(jobId: "acct-1@earlier", scheduledAt: job.scheduledAt - 300), updatedAt: PoisonJobs.now,
            data: ["cursor": 1])
        let huge = JSONValue.string(String(repeating: "x", count: 1_200_000))
        let result = await processor(
            ScriptedIntegration { _ in
                SyncOutcome(activities: [], state: ["seen": huge], updatedConfig: ["access_token": "new-token"])
            }
        ).process(job, origin: origin(value: [1]), account: .found(try PoisonJobs.account()), state: previous)

        #expect(result.outcome == .deadLettered)
        let kept = try #require(result.newState)
        #expect(kept.data == previous.data && kept.lastJob == previous.lastJob, "the sync's progress is not saved")
        let refreshed = try #require(kept.credentials?.refreshed)
        #expect(try FakeSealer().open(refreshed)["access_token"] == "new-token")
        let record = try #require(result.stateRecords.first)
        let written = try WireFormat.decode(StateRecord.self, from: record.value ?? [])
        #expect(written.credentials == kept.credentials && written.lastJob == previous.lastJob)
        #expect(record.partition == 3)
    }

    @Test("a state that cannot be encoded dead-letters the job instead of vanishing")
    func unencodableStateDeadLettersTheJob() async throws {
        let result = try await job { _ in SyncOutcome(activities: [], state: ["ratio": .number(.nan)]) }
        #expect(result.outcome == .deadLettered)
        #expect(result.stateRecords.count == 0 && result.newState == nil)
        let record = try #require(result.records.first)
        #expect(headers(record)[DeadLetterHeader.code] == "output_not_encodable")
        #expect(result.status?.status == .failing)
        #expect(counted("dropped", "state") == 1)
    }

    @Test("a refreshed token pair that cannot be sealed fails the job and says why, instead of being dropped")
    func unsealableRefreshFailsTheJob() async throws {
        let job = PoisonJobs.validJob()
        var processor = processor(
            ScriptedIntegration { _ in
                SyncOutcome(
                    activities: [], state: ["cursor": 2],
                    updatedConfig: ["access_token": "new-token", "refresh_token": "new-refresh"])
            })
        processor.sealer = SealerThatCannotSeal()
        let result = await processor.process(
            job, origin: origin(value: [1]), account: .found(try PoisonJobs.account()), state: nil)

        #expect(result.outcome == .failed)
        #expect(result.records.count == 0 && result.stateRecords.count == 0 && result.newState == nil)
        let status = try #require(result.status)
        #expect(status.status == .failing)
        #expect(status.reason?.contains("could not be sealed") == true)
        #expect(status.reason?.contains("new-token") == false)
        #expect(counted("dropped", "refreshed_credentials") == 1)
    }

    @Test("a status record's reason is bounded")
    func statusReasonsAreBounded() throws {
        let status = AccountStatus(
            accountId: "acct-1", integration: "github", status: .failing,
            reason: String(repeating: "r", count: 100_000), at: PoisonJobs.now)
        let record = try #require(processor().statusRecord(status))
        let written = try WireFormat.decode(Envelope<AccountStatus>.self, from: record.value ?? []).data
        #expect((written.reason?.utf8.count ?? 0) <= JobProcessor.maxReasonBytes)
        #expect(written.reason?.hasPrefix("rrrr") == true)
    }
}

/// An integration that returns whatever the test says.
struct ScriptedIntegration: Integration {
    let key = "github"
    let outcome: @Sendable (SyncRequest) throws -> SyncOutcome

    init(_ outcome: @escaping @Sendable (SyncRequest) throws -> SyncOutcome) { self.outcome = outcome }

    func spec() -> JSONValue { ["key": "github"] }
    func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
        AccountSetup(accountId: "1", config: [:], settings: [:])
    }
    func sync(_ request: SyncRequest) async throws -> SyncOutcome { try outcome(request) }
}

/// Opens configs like ``FakeSealer`` but cannot seal: a worker whose sealing key became unusable.
struct SealerThatCannotSeal: ConfigSealer {
    struct Unavailable: Error {}
    func hasKey(id: String) -> Bool { FakeSealer().hasKey(id: id) }
    func open(_ sealed: SealedConfig) throws -> JSONValue { try FakeSealer().open(sealed) }
    func seal(_ config: JSONValue) throws -> SealedConfig { throw Unavailable() }
}
