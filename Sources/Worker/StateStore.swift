import Foundation
import SyncModel

/// The states of the accounts in the partitions this worker owns, restored from the state topic.
///
/// The state topic is co-partitioned with the jobs topic, so owning jobs partition p means owning exactly the
/// states in state partition p: restore it on assignment, drop it on revocation. A partition that is not
/// restored yet has no entry, and its jobs must wait.
struct StateStore: Sendable {
    private var partitions: [Int32: [String: StateRecord]] = [:]
    /// The status last written per account, so a status record is written only when it changes.
    private var statuses: [String: AccountStatus.Status] = [:]

    init() {}

    /// Decodes the newest state record of each account (the keys' newest records, as `readNewestPerKey` returns
    /// them); done outside the worker's lock, since decoding is the expensive part of a restore.
    ///
    /// - Returns: the states, and the number of values that could not be decoded (skipped, so one bad record
    ///   cannot block a partition; the next sync of that account starts from scratch).
    static func decode(_ records: [(key: [UInt8]?, value: [UInt8]?)]) -> (
        states: [String: StateRecord], undecodable: Int
    ) {
        var states: [String: StateRecord] = [:]
        var undecodable = 0
        for record in records {
            guard let key = record.key else { continue }
            let accountId = String(decoding: key, as: UTF8.self)
            guard let value = record.value, !value.isEmpty else {
                states[accountId] = nil  // tombstone
                continue
            }
            do {
                states[accountId] = try WireFormat.decode(StateRecord.self, from: value)
            } catch {
                states[accountId] = nil
                undecodable += 1
            }
        }
        return (states, undecodable)
    }

    /// Installs a partition's restored states.
    mutating func restore(partition: Int32, states: [String: StateRecord]) {
        partitions[partition] = states
    }

    mutating func drop(_ revoked: some Sequence<Int32>) {
        for partition in revoked {
            if let states = partitions.removeValue(forKey: partition) {
                for accountId in states.keys { statuses[accountId] = nil }
            }
        }
    }

    func isRestored(_ partition: Int32) -> Bool { partitions[partition] != nil }

    func state(partition: Int32, accountId: String) -> StateRecord? { partitions[partition]?[accountId] }

    mutating func update(partition: Int32, _ record: StateRecord) {
        guard partitions[partition] != nil else { return }
        partitions[partition]![record.accountId] = record
    }

    /// Puts an account's state back (nil: the account had none), e.g. after the job that changed it was
    /// dead-lettered and its new state never written.
    mutating func restore(partition: Int32, accountId: String, to record: StateRecord?) {
        guard partitions[partition] != nil else { return }
        partitions[partition]![accountId] = record
    }

    var accountCount: Int { partitions.values.reduce(0) { $0 + $1.count } }

    /// Whether `status` differs from the last one written for the account; records it as written if so.
    mutating func statusChanged(accountId: String, to status: AccountStatus.Status) -> Bool {
        if statuses[accountId] == status { return false }
        statuses[accountId] = status
        return true
    }
}

/// The duplicate-fire rule.
///
/// A regular tick whose `scheduledAt` is not newer than the last tick processed for the account (or that has
/// the same `jobId`) was already run: two schedulers fired the same tick, or the job was re-consumed after a
/// crash before its offset was committed. A resync job (`since` set) is an explicit request and always runs;
/// it does not move the marker, so it never hides a regular tick either.
enum DuplicateFire {
    static func isDuplicate(_ job: SyncJob, lastJob: JobMarker?) -> Bool {
        guard job.since == nil, let lastJob else { return false }
        return job.jobId == lastJob.jobId || job.scheduledAt <= lastJob.scheduledAt
    }

    /// The marker after running `job`.
    static func marker(after job: SyncJob, previous: JobMarker?) -> JobMarker? {
        if job.since != nil { return previous }
        return JobMarker(jobId: job.jobId, scheduledAt: job.scheduledAt)
    }
}
