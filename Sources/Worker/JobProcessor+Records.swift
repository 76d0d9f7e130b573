import Foundation
import IntegrationCatalog
import Logging
import Sealing
import SyncModel

/// How a sync's outcome becomes the job's records: activities first, then the state record that accounts for them,
/// each within ``JobProcessor/maxRecordBytes``.
extension JobProcessor {
    /// The records of a sync that returned an outcome, as a list of steps: its verdict, a refreshed token pair
    /// sealed, its activities, its new state.
    func records(
        for outcome: SyncOutcome, job: SyncJob, origin: JobOrigin, state: StateRecord?, tag: String,
        credentials: CredentialState?, now: Date
    ) -> JobResult {
        var verdict = Verdict(outcome.status, tag: tag, credentials: credentials)
        var refreshedCredentials: CredentialState?
        if let updated = outcome.updatedConfig {
            switch sealRefreshed(
                updated, tag: tag, rejected: verdict.credentials?.rejected ?? false, job: job, now: now)
            {
            case .proceed(let sealed):
                verdict.credentials = sealed
                refreshedCredentials = sealed
            case .finish(let failed): return failed
            }
        }
        var result = verdict.result
        for activity in outcome.activities {
            guard let record = activityRecord(activity, integration: job.integration, key: job.accountId) else {
                continue
            }
            result.records.append(record)
        }
        result.activityCount = result.records.count  // written ones: a dropped activity was logged and counted
        let newState = StateRecord(
            accountId: job.accountId, integration: job.integration,
            lastJob: DuplicateFire.marker(after: job, previous: state?.lastJob), updatedAt: now, data: outcome.state,
            credentials: verdict.credentials)
        let stateRecord: OutgoingRecord
        switch newStateRecord(
            newState, job: job, origin: origin, state: state, activities: outcome.activities.count,
            refreshedCredentials: refreshedCredentials, now: now)
        {
        case .proceed(let record): stateRecord = record
        case .finish(let unwritable): return unwritable
        }
        result.stateRecords.append(stateRecord)
        result.newState = newState
        result.status = AccountStatus(
            accountId: job.accountId, integration: job.integration, status: verdict.status, reason: verdict.reason,
            at: now)
        return result
    }

    /// What a sync's status makes of the job: its outcome, the account's status and why, and the token pair to keep
    /// (a rejected one is marked, so the account's next jobs wait for a reconnect instead of asking again).
    private struct Verdict {
        var result: JobResult
        var status: AccountStatus.Status
        var reason: String?
        var credentials: CredentialState?

        init(_ syncStatus: SyncOutcome.Status, tag: String, credentials: CredentialState?) {
            self.credentials = credentials
            switch syncStatus {
            case .complete:
                result = JobResult(outcome: .synced)
                status = .ok
                reason = nil
            case .partial(let why, _):
                result = JobResult(outcome: .partial)
                status = .ok
                reason = why
            case .failed(let why):
                // Failed, with something to keep (an SDK CLI's refreshed config): written with the unchanged state.
                result = JobResult(outcome: .failed)
                status = .failing
                reason = "sync failed: \(why.prefix(200))"
            case .needsReauth(let why):
                result = JobResult(outcome: .needsReauth)
                status = .needsReauth
                reason = why
                self.credentials = CredentialState(
                    accountConfigTag: tag, refreshed: credentials?.refreshed, rejected: true)
            }
        }
    }

    /// The token pair the sync refreshed, sealed for the state record. One that cannot be sealed fails the job with
    /// nothing written: the integration already swapped the pair, and writing the output without it would leave the
    /// account on a pair that no longer works, and nobody would know why.
    private func sealRefreshed(
        _ updated: JSONValue, tag: String, rejected: Bool, job: SyncJob, now: Date
    ) -> Step<CredentialState> {
        do {
            let sealed = try sealer.seal(updated)
            return .proceed(CredentialState(accountConfigTag: tag, refreshed: sealed, rejected: rejected))
        } catch {
            WorkerMetrics.dropped(.refreshedCredentials, factory: metricsFactory)
            logger.error(
                "could not seal a refreshed token pair; the job fails and writes nothing",
                metadata: ["account": "\(job.accountId)", "error": "\(type(of: error))"])
            var failed = JobResult(outcome: .failed)
            failed.status = AccountStatus(
                accountId: job.accountId, integration: job.integration, status: .failing,
                reason: "the token pair was refreshed but could not be sealed (\(type(of: error))); "
                    + "check the worker's sealing key; the account may need reconnecting",
                at: now)
            return .finish(failed)
        }
    }

    /// The new state as a record of the state topic. A state that cannot be encoded or exceeds ``maxRecordBytes``
    /// cannot be shortened without losing the sync's position: the job becomes a dead letter and writes none of its
    /// activities, and as the state does not advance, they are read again once the integration is fixed.
    private func newStateRecord(
        _ newState: StateRecord, job: SyncJob, origin: JobOrigin, state: StateRecord?, activities: Int,
        refreshedCredentials: CredentialState?, now: Date
    ) -> Step<OutgoingRecord> {
        let stateRecord: OutgoingRecord
        do {
            stateRecord = OutgoingRecord(
                topic: topics.state, partition: origin.partition, key: job.accountId,
                value: try WireFormat.encode(newState), headers: CloudEvents.headers(for: newState))
        } catch {
            WorkerMetrics.dropped(.state, factory: metricsFactory)
            logger.error(
                "the integration's state cannot be encoded; the job goes to the dead-letter topic",
                metadata: ["account": "\(job.accountId)", "error": "\(type(of: error))"])
            return .finish(
                unwritableOutput(
                    Poison(.outputNotEncodable, "the state record cannot be encoded as JSON (\(type(of: error)))"),
                    job: job, origin: origin, state: state, refreshedCredentials: refreshedCredentials, now: now))
        }
        guard stateRecord.estimatedSize <= maxRecordBytes else {
            WorkerMetrics.dropped(.state, factory: metricsFactory)
            logger.error(
                "the state record exceeds maxRecordBytes; the job goes to the dead-letter topic",
                metadata: [
                    "account": "\(job.accountId)", "size": "\(stateRecord.estimatedSize)",
                    "maxRecordBytes": "\(maxRecordBytes)", "activities": "\(activities)",
                ])
            return .finish(
                unwritableOutput(
                    Poison(
                        .outputTooLarge,
                        "state record of \(stateRecord.estimatedSize) bytes exceeds maxRecordBytes \(maxRecordBytes)"),
                    job: job, origin: origin, state: state, refreshedCredentials: refreshedCredentials, now: now))
        }
        return .proceed(stateRecord)
    }

    /// A job whose output cannot be written: dead-lettered, the account marked failing, its state unchanged —
    /// except for a token pair the sync refreshed, which is kept beside the previous state, because the old pair
    /// no longer works.
    private func unwritableOutput(
        _ poison: Poison, job: SyncJob, origin: JobOrigin, state: StateRecord?, refreshedCredentials: CredentialState?,
        now: Date
    ) -> JobResult {
        var result = deadLetter(poison, origin: origin, now: now)
        result.status = AccountStatus(
            accountId: job.accountId, integration: job.integration, status: .failing,
            reason: "the sync's output cannot be written: \(poison.reason); the job is on the dead-letter topic",
            at: now)
        guard let refreshedCredentials else { return result }
        if let (kept, record) = credentialsRecord(
            refreshedCredentials, job: job, partition: origin.partition, state: state, now: now)
        {
            result.stateRecords = [record]
            result.newState = kept
            return result
        }
        WorkerMetrics.dropped(.refreshedCredentials, factory: metricsFactory)
        logger.error(
            "the refreshed token pair cannot be saved beside the previous state; the account may need reconnecting",
            metadata: ["account": "\(job.accountId)"])
        return result
    }

    /// An activity's record, its text shortened (and marked `truncated`) when the whole would exceed
    /// ``maxRecordBytes``; nil, logged and counted when even that cannot make it fit or it cannot be encoded.
    private func activityRecord(_ activity: Activity, integration: String, key: String) -> OutgoingRecord? {
        let headers = CloudEvents.headers(for: activity, integration: integration)
        func record(_ activity: Activity) throws -> OutgoingRecord {
            OutgoingRecord(
                topic: topics.activities, key: key, value: try activity.messageBytes(), headers: headers)
        }
        do {
            var candidate = try record(activity)
            var shortened = activity
            shortened.truncated = true
            var textBytes = activity.text.utf8.count
            // Each byte cut from the text shrinks the JSON by at least a byte (escapes only make it longer), so
            // cutting the excess plus room for the marker and the ellipsis fits in one step, or two at most.
            while candidate.estimatedSize > maxRecordBytes {
                guard textBytes > 0 else {
                    WorkerMetrics.dropped(.activity, factory: metricsFactory)
                    logger.error(
                        "an activity exceeds maxRecordBytes even without its text; it is not written",
                        metadata: [
                            "account": "\(key)", "size": "\(candidate.estimatedSize)",
                            "maxRecordBytes": "\(maxRecordBytes)",
                        ])
                    return nil
                }
                let excess = candidate.estimatedSize - maxRecordBytes
                textBytes = max(0, min(textBytes, shortened.text.utf8.count) - excess - 32)
                shortened.text = Self.bounded(activity.text, maxBytes: textBytes + 3)
                candidate = try record(shortened)
            }
            if shortened.text != activity.text {
                WorkerMetrics.truncated(.activity, factory: metricsFactory)
                logger.warning(
                    "an activity's text was cut to fit in maxRecordBytes",
                    metadata: [
                        "account": "\(key)", "textBytes": "\(activity.text.utf8.count)",
                        "keptBytes": "\(shortened.text.utf8.count)",
                    ])
            }
            return candidate
        } catch {
            WorkerMetrics.dropped(.activity, factory: metricsFactory)
            logger.error(
                "an activity cannot be encoded; it is not written",
                metadata: ["account": "\(key)", "error": "\(type(of: error))"])
            return nil
        }
    }
}
