import Foundation
import SyncModel

/// Builds the run record of a consumed job (``RunRecord``) for the runs topic. Pure: the state machine appends it
/// to the job's output, so it is written in the job's transaction or not at all.
struct RunRecorder: Sendable {
    var topic: String
    var workerId: String

    /// The run record of `job` (nil for a job whose bytes could not be decoded: the key and offset still say which).
    func record(
        job: SyncJob?, origin: JobOrigin, outcome: RunRecord.Outcome, reason: String?, activities: Int,
        startedAt: Date, finishedAt: Date
    ) -> OutgoingRecord? {
        let accountId = job?.accountId ?? origin.key.map { String(decoding: $0.prefix(1_024), as: UTF8.self) }
        let run = RunRecord(
            accountId: accountId, integration: job?.integration, jobId: job?.jobId, scheduledAt: job?.scheduledAt,
            outcome: outcome, startedAt: startedAt, finishedAt: finishedAt, activities: activities,
            reason: reason.map { JobProcessor.bounded($0, maxBytes: JobProcessor.maxReasonBytes) },
            partition: Int(origin.partition), offset: origin.offset, workerId: workerId)
        guard let value = try? run.messageBytes() else { return nil }
        return OutgoingRecord(topic: topic, key: accountId, value: value)
    }

    /// How a job's result reads in its run record.
    static func outcome(of result: JobResult) -> (RunRecord.Outcome, reason: String?) {
        switch result.outcome {
        case .synced: (.succeeded, nil)
        case .partial: (.partial, result.status?.reason)
        case .duplicate: (.skipped, "duplicate: a tick that already ran for this account")
        case .paused: (.skipped, result.reason ?? "paused")
        case .backingOff: (.skipped, result.reason ?? "backing off")
        case .deadLettered: (.deadLettered, result.poison?.description)
        case .needsReauth: (.needsReauth, result.status?.reason)
        case .failed:
            (.failed, result.status?.reason ?? "cancelled (revocation or shutdown); the job runs again from its offset")
        case .coalesced: (.coalesced, nil)
        }
    }
}
