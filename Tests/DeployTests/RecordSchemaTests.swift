import ActivitySyncTesting
import Foundation
import SyncModel
import Testing

/// Records as SyncModel encodes them must validate against docs/schemas, through scripts/validate-records.py —
/// the same script the end-to-end test feeds every record it sees.
@Suite(.enabled(if: pythonChecksEnabled, "ACTIVITY_SYNC_SKIP_PYTHON=1"), .timeLimit(.minutes(2)))
struct RecordSchemaTests {
    static let schemaNames = ["account", "account-setup", "activity", "dead-letter", "job", "run", "state", "status"]

    /// Runs the validator on JSON lines; returns its exit status and output.
    func validate(_ lines: [[String: Any]]) async throws -> ProcessResult {
        var input = Data()
        for line in lines {
            input.append(try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]))
            input.append(UInt8(ascii: "\n"))
        }
        return try await runProcess(
            "python3", ["scripts/validate-records.py", "docs/schemas"], stdin: input)
    }

    func line(_ record: SampleRecord, where label: String? = nil) -> [String: Any] {
        [
            "schema": record.schema, "valueText": String(decoding: record.bytes, as: UTF8.self),
            "where": label ?? "\(record.schema): \(record.label)",
        ]
    }

    @Test("docs/schemas has one schema per record type")
    func oneSchemaPerRecordType() throws {
        let files = try FileManager.default.contentsOfDirectory(
            atPath: RepoPaths.root.appendingPathComponent("docs/schemas").path)
        #expect(Set(files.filter { $0.hasSuffix(".schema.json") }) == Set(Self.schemaNames.map { "\($0).schema.json" }))
    }

    @Test("one record of every type, as SyncModel encodes it, validates against its schema")
    func everyRecordTypeValidates() async throws {
        let samples = try SampleRecords.all()
        #expect(Set(samples.map(\.schema)) == Set(Self.schemaNames))
        let result = try await validate(samples.map { line($0) })
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("validated \(samples.count) records, 0 invalid"), "\(result.output)")
    }

    @Test("records addressed by topic, with key and headers as a consumer sees them, validate")
    func recordsByTopicWithHeaders() async throws {
        let topics = TopicNames.default
        let activity = Activity(
            text: "octocat created PR #7: Add docs", sourceURL: "https://github.com/o/r/pull/7",
            id: "github:event:99", occurredAt: SampleRecords.scheduledAt, kind: "pr_opened", repo: "o/r", number: 7,
            actor: "octocat", accountId: "583231")
        let state = StateRecord(
            accountId: "583231", integration: "github", lastJob: nil, updatedAt: SampleRecords.scheduledAt,
            data: ["username": "octocat"])
        let deadLetter = DeadLetter(
            reason: "unknown integration \"gitlab\"", code: "unknown_integration", originalTopic: topics.jobs,
            originalPartition: 3, originalOffset: 41, originalKey: "583231", originalValue: Array("{}".utf8),
            failedAt: SampleRecords.scheduledAt, workerId: "worker-1")
        func headers(_ pairs: [(String, String)]) -> [[String]] { pairs.map { [$0.0, $0.1] } }

        let lines: [[String: Any]] = [
            [
                "topic": topics.activities, "key": "583231",
                "valueText": String(decoding: try activity.messageBytes(), as: UTF8.self),
                "headers": headers(CloudEvents.headers(for: activity, integration: "github")),
            ],
            [
                "topic": topics.state, "key": "583231",
                "valueText": String(decoding: try WireFormat.encode(state), as: UTF8.self),
                "headers": Dictionary(uniqueKeysWithValues: CloudEvents.headers(for: state)),
            ],
            [
                "topic": topics.deadLetters, "key": "583231",
                "valueText": String(decoding: try deadLetter.messageBytes(), as: UTF8.self),
                "headers": headers(deadLetter.headers),
            ],
            // Tombstones remove an account or a state; they are valid on compacted topics.
            ["topic": topics.accounts, "key": "583231", "value": NSNull()],
            ["topic": topics.state, "key": "583231", "value": NSNull()],
        ]
        let result = try await validate(lines)
        #expect(result.status == 0, "\(result.output)")
    }

    @Test("broken records are rejected, each with the line and the reason")
    func brokenRecordsAreRejected() async throws {
        let samples = try SampleRecords.all()
        func sample(_ schema: String) throws -> [String: Any] {
            let record = try #require(samples.first { $0.schema == schema })
            return try #require(JSONSerialization.jsonObject(with: Data(record.bytes)) as? [String: Any])
        }

        var job = try sample("job")
        job.removeValue(forKey: "jobId")

        var activity = try sample("activity")
        var activityData = try #require(activity["data"] as? [String: Any])
        activityData["occurredAt"] = "2026-12-01 04:05:00"  // not RFC 3339
        activity["data"] = activityData

        var state = try sample("state")
        state["type"] = "State"

        var account = try sample("account")
        var accountData = try #require(account["data"] as? [String: Any])
        accountData["config"] = ["access_token": "gho_plaintext"]  // a plaintext config must never be on Kafka
        account["data"] = accountData

        var status = try sample("status")
        var statusData = try #require(status["data"] as? [String: Any])
        statusData["status"] = "broken"
        status["data"] = statusData

        let validActivity = try sample("activity")
        let lines: [[String: Any]] = [
            ["schema": "job", "value": job, "where": "missing jobId"],
            ["schema": "activity", "value": activity, "where": "bad date"],
            ["schema": "state", "value": state, "where": "wrong type constant"],
            ["schema": "account", "value": account, "where": "plaintext config"],
            ["schema": "status", "value": status, "where": "unknown status"],
            ["schema": "job", "valueText": "{not json", "where": "not JSON"],
            ["topic": "activity-sync.activities", "value": NSNull(), "where": "tombstone on activities"],
            ["topic": "activity-sync.activities", "key": "someone-else", "value": validActivity, "where": "key"],
            [
                "topic": "activity-sync.activities", "value": validActivity, "headers": ["ce_id": "x"],
                "where": "headers",
            ],
        ]
        let result = try await validate(lines)
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("validated \(lines.count) records, \(lines.count) invalid"), "\(result.output)")
        for expected in [
            "[missing jobId] job: <root> - 'jobId' is a required property",
            "[bad date] activity: data/occurredAt",
            "[wrong type constant] state: type",
            "[plaintext config] account: data - Additional properties are not allowed ('config' was unexpected)",
            "[unknown status] status: data/status",
            "[not JSON] job: <value> - not JSON",
            "[tombstone on activities] activity: <value>",
            "[key] activity: <key> - key 'someone-else' differs from accountId '583231'",
            "[headers] activity: <headers> - missing CloudEvents header ce_specversion",
            "[headers] activity: <headers> - ce_id 'x' differs from the activity id",
        ] {
            #expect(result.output.contains(expected), "expected \"\(expected)\" in:\n\(result.output)")
        }
    }

    @Test("every example record in docs/topics.md validates against the schema it is tagged with")
    func topicExamplesValidate() async throws {
        let topics = try String(
            contentsOf: RepoPaths.root.appendingPathComponent("docs/topics.md"), encoding: .utf8)
        var lines: [[String: Any]] = []
        var schema: String?
        var block: [Substring]?
        for text in topics.split(separator: "\n", omittingEmptySubsequences: false) {
            if let match = text.wholeMatch(of: /<!-- schema: ([a-z-]+) -->/) {
                schema = String(match.output.1)
            } else if text == "```json", schema != nil {
                block = []
            } else if text == "```", let body = block, let name = schema {
                lines.append(["schema": name, "valueText": body.joined(separator: "\n"), "where": "topics.md \(name)"])
                block = nil
                schema = nil
            } else if block != nil {
                block?.append(text)
            }
        }
        #expect(Set(lines.compactMap { $0["schema"] as? String }) == Set(Self.schemaNames))
        let result = try await validate(lines)
        #expect(result.status == 0, "\(result.output)")
    }

    @Test("input the validator cannot read exits 2, not 0 or 1")
    func unreadableInputExitsTwo() async throws {
        let result = try await validate([["schema": "no-such-schema", "value": [:] as [String: Any]]])
        #expect(result.status == 2, "\(result.output)")
        #expect(result.output.contains("unknown schema 'no-such-schema'"), "\(result.output)")
    }
}
