import Foundation
import SyncModel

/// One record per schema in docs/schemas, encoded exactly as the scheduler and the workers put them on Kafka,
/// plus variants that exercise the optional fields (present and absent) and millisecond dates.
struct SampleRecord {
    /// The schema's name: `docs/schemas/<schema>.schema.json`.
    var schema: String
    var label: String
    var bytes: [UInt8]
}

enum SampleRecords {
    static let scheduledAt = Date(timeIntervalSince1970: 1_796_097_900)  // 2026-12-01T04:05:00Z
    static let withMillis = Date(timeIntervalSince1970: 1_796_097_923.25)
    static let sealed = SealedConfig(
        keyId: "k-2026-12", ciphertext: Data((0..<60).map { UInt8($0) }).base64EncodedString())

    static func all() throws -> [SampleRecord] {
        var records: [SampleRecord] = []
        func add(_ schema: String, _ label: String, _ bytes: [UInt8]) {
            records.append(SampleRecord(schema: schema, label: label, bytes: bytes))
        }

        // Jobs are written bare: `type` is one of the job's own fields.
        add(
            "job", "regular tick",
            try WireFormat.encode(
                SyncJob(accountId: "583231", integration: "github", scheduledAt: scheduledAt)))
        add(
            "job", "resync with since",
            try WireFormat.encode(
                SyncJob(
                    accountId: "583231", integration: "github", scheduledAt: withMillis, attempt: 2,
                    since: Date(timeIntervalSince1970: 1_795_000_000))))

        add(
            "activity", "notification, all fields",
            try Activity(
                text: "octocat commented on PR #1347 in octo-org/octo-repo: Looks good to me",
                sourceURL: "https://github.com/octo-org/octo-repo/pull/1347",
                id: "github:notification:1:2026-12-01T04:01:07Z", occurredAt: withMillis, kind: "comment",
                repo: "octo-org/octo-repo", number: 1347, actor: "octocat", accountId: "583231",
                commentURL: "https://github.com/octo-org/octo-repo/pull/1347#issuecomment-1"
            ).messageBytes())
        add(
            "activity", "optional fields absent",
            try Activity(
                text: "GitHub notification for hubot in octo-org/octo-repo",
                sourceURL: "https://github.com/octo-org/octo-repo", id: "github:event:30000000001",
                occurredAt: scheduledAt, kind: "author", accountId: "583231"
            ).messageBytes())

        // State records are written bare too, with the integration's own state in `data`.
        let githubState: JSONValue = [
            "lastSyncTime": "2026-12-01T04:05:00Z", "lastUserEventTime": "2026-12-01T03:59:12Z",
            "username": "octocat", "needsReauth": false, "recentIds": ["github:event:1", "github:event:2"],
            "validators": ["notifications": ["lastModified": "Tue, 01 Dec 2026 04:05:00 GMT"]],
            "pollIntervalSeconds": 60, "ratio": .number(0.5), "gap": nil,
        ]
        add(
            "state", "after a job",
            try WireFormat.encode(
                StateRecord(
                    accountId: "583231", integration: "github",
                    lastJob: JobMarker(
                        jobId: SyncJob.makeId(accountId: "583231", scheduledAt: scheduledAt),
                        scheduledAt: scheduledAt),
                    updatedAt: withMillis, data: githubState)))
        add(
            "state", "after a token refresh",
            try WireFormat.encode(
                StateRecord(
                    accountId: "583231", integration: "github", lastJob: nil, updatedAt: scheduledAt, data: [:],
                    credentials: CredentialState(accountConfigTag: "q1w2e3", refreshed: sealed, rejected: false))))
        add(
            "state", "no job yet",
            try WireFormat.encode(
                StateRecord(accountId: "583231", integration: "github", lastJob: nil, updatedAt: scheduledAt, data: [:])
            ))

        add(
            "account", "with username",
            try AccountRecord(
                accountId: "583231", integration: "github",
                settings: AccountSettings(username: "octocat", frequency: "*/5 * * * *"), sealedConfig: sealed,
                updatedAt: scheduledAt
            ).messageBytes())
        add(
            "account", "disabled, no username, seconds field",
            try AccountRecord(
                accountId: "42", integration: "github",
                settings: AccountSettings(frequency: "*/10 * * * * *", enabled: false), sealedConfig: sealed,
                updatedAt: withMillis
            ).messageBytes())

        // What `activity-sync integration github setup` prints: the SDK's account message, config in plaintext.
        add(
            "account-setup", "github setup output",
            try WireFormat.encode(
                Envelope(
                    type: "account",
                    data: AccountSetup(
                        accountId: "583231",
                        config: [
                            "access_token": "gho_EXAMPLE", "refresh_token": "ghr_EXAMPLE",
                            "mcp": ["tokens": ["access_token": "gho_EXAMPLE"]],
                        ],
                        settings: ["username": "octocat", "schedule": ["frequency": "*/5 * * * *"]]))))

        add(
            "dead-letter", "not JSON",
            try DeadLetter(
                reason: "the job is not valid JSON: unexpected character at offset 0", code: "not_json",
                originalTopic: "activity-sync.jobs", originalPartition: 7, originalOffset: 1234,
                originalKey: "583231", originalValue: Array("{oops".utf8), failedAt: withMillis, workerId: "worker-0"
            ).messageBytes())
        add(
            "dead-letter", "no key, empty value",
            try DeadLetter(
                reason: "empty job", code: "empty_value", originalTopic: "activity-sync.jobs", originalPartition: 0,
                originalOffset: 0, originalKey: nil, originalValue: [], failedAt: scheduledAt, workerId: "w1"
            ).messageBytes())

        add(
            "status", "needs re-auth",
            try AccountStatus(
                accountId: "583231", integration: "github", status: .needsReauth,
                reason: "GitHub answered 401 Bad credentials and the token could not be refreshed", at: withMillis,
                accountVersion: "9f3a61c0b2d4e857"
            ).messageBytes())
        add(
            "status", "ok without reason",
            try AccountStatus(
                accountId: "583231", integration: "github", status: .ok, reason: nil, at: scheduledAt
            ).messageBytes())

        add(
            "run", "succeeded",
            try RunRecord(
                accountId: "583231", integration: "github", jobId: "583231@2026-12-01T04:05:00Z",
                scheduledAt: scheduledAt, outcome: .succeeded, startedAt: withMillis,
                finishedAt: withMillis.addingTimeInterval(0.5), activities: 3, reason: nil, partition: 7, offset: 1234,
                workerId: "worker-0"
            ).messageBytes())
        add(
            "run", "dead-lettered without a job id",
            try RunRecord(
                accountId: nil, integration: nil, jobId: nil, scheduledAt: nil, outcome: .deadLettered,
                startedAt: withMillis, finishedAt: withMillis, activities: 0,
                reason: "not_json: the value is not valid JSON",
                partition: 0, offset: 0, workerId: "worker-0"
            ).messageBytes())
        return records
    }
}
