import Foundation
public import SyncModel

/// Encodes jobs for the jobs topic.
///
/// At a million accounts the scheduler writes tens of thousands of jobs a second in bursts; `JSONEncoder` is the
/// bottleneck there, so plain jobs are written by hand — byte for byte what ``WireFormat`` produces (sorted
/// keys, unescaped slashes; a test checks they agree). Anything needing escapes goes through `WireFormat`.
public struct JobEncoder: Sendable {
    /// Jobs of one tick share their `scheduledAt`; formatting a date is the slow part, so the last one is kept.
    private var lastDate: Date?
    private var lastText = ""

    public init() {}

    /// The value bytes of a regular (not resync) job for a due tick.
    public mutating func encode(_ due: DueJob) throws -> [UInt8] {
        let date = format(due.scheduledAt)
        let job = SyncJob(
            accountId: due.accountId, integration: due.integration, scheduledAt: due.scheduledAt,
            sealedConfig: due.sealedConfig, jobId: "\(due.accountId)@\(date)")
        return try encode(job, formattedDate: date)
    }

    /// The job's value bytes.
    public mutating func encode(_ job: SyncJob) throws -> [UInt8] {
        try encode(job, formattedDate: format(job.scheduledAt))
    }

    private mutating func format(_ date: Date) -> String {
        if date != lastDate {
            lastDate = date
            lastText = WireFormat.formatDate(date)
        }
        return lastText
    }

    private func encode(_ job: SyncJob, formattedDate: String) throws -> [UInt8] {
        guard job.since == nil,
            [
                job.accountId, job.integration, job.jobId, job.sealedConfig.algorithm, job.sealedConfig.ciphertext,
                job.sealedConfig.keyId, job.type,
            ].allSatisfy(Self.isPlain)
        else {
            return try WireFormat.encode(job)
        }
        var out: [UInt8] = []
        out.reserveCapacity(160 + job.sealedConfig.ciphertext.utf8.count + 2 * job.accountId.utf8.count)
        func append(_ text: String) { out.append(contentsOf: text.utf8) }
        append("{\"accountId\":\"")
        append(job.accountId)
        append("\",\"attempt\":")
        append(String(job.attempt))
        append(",\"integration\":\"")
        append(job.integration)
        append("\",\"jobId\":\"")
        append(job.jobId)
        append("\",\"scheduledAt\":\"")
        append(formattedDate)
        append("\",\"sealedConfig\":{\"algorithm\":\"")
        append(job.sealedConfig.algorithm)
        append("\",\"ciphertext\":\"")
        append(job.sealedConfig.ciphertext)
        append("\",\"keyId\":\"")
        append(job.sealedConfig.keyId)
        append("\"},\"type\":\"")
        append(job.type)
        append("\"}")
        return out
    }

    /// No byte JSON would escape: no quote, backslash or control character.
    private static func isPlain(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    }
}
