import Foundation

/// The notification threads whose subject keeps failing to load, and what one sync does with each failed version:
/// keep it for the next sync, give up on it (emitted from what its notification says), or emit the versions a
/// settled thread left behind. A pure value: the sync asks it and does the emitting.
///
/// Failures are counted per thread, across its versions: GitHub re-bumps a thread on new activity, and a subject
/// that keeps failing must still be given up even when every sync lists a newer version.
struct StuckSubjectLedger {
    typealias Record = GitHubState.StuckItem
    typealias Version = GitHubState.StuckItem.Version

    /// Failed syncs after which a thread is given up.
    let giveUpAfterSyncs: Int
    /// Time since the first failure after which a thread is given up.
    let giveUpAfterAge: TimeInterval
    let now: Date
    /// Records from the last sync, by thread, that this sync has not reached yet.
    private var prior: [String: Record]
    /// Records the next sync starts from.
    private(set) var records: [String: Record] = [:]
    /// Threads that failed in this sync and are kept for the next one.
    private(set) var failedThreads = 0

    /// - Parameter stored: the state's records; states written before hold `{thread}:{updated_at}` keys, which are
    ///   merged per thread (earliest first failure, most failures, every left-behind version).
    init(stored: [String: Record], giveUpAfterSyncs: Int, giveUpAfterAge: TimeInterval, now: Date) {
        self.giveUpAfterSyncs = giveUpAfterSyncs
        self.giveUpAfterAge = giveUpAfterAge
        self.now = now
        var prior: [String: Record] = [:]
        for (key, record) in stored {
            let thread = String(key.prefix { $0 != ":" })
            if let existing = prior[thread] {
                prior[thread] = .init(
                    since: min(existing.since, record.since), failures: max(existing.failures, record.failures),
                    superseded: existing.superseded + record.superseded)
            } else {
                prior[thread] = record
            }
        }
        self.prior = prior
    }

    /// One thread this sync reached, between `open` and `settle`.
    struct Entry {
        let id: String
        /// Syncs in which the thread failed, this one included.
        let failures: Int
        /// When it first failed; now when it fails for the first time.
        let since: Date
        /// Whether failed versions are given up instead of kept.
        let givingUp: Bool
        let failedNow: Bool
        /// Versions to keep for the next sync (failed before and still pending, or failing now).
        fileprivate(set) var kept: [Version]
        fileprivate(set) var waiting = false
    }

    /// What to do with one version whose subject did not load.
    enum Decision: Equatable {
        /// Emit it from its notification alone and let the watermark pass it.
        case giveUp
        /// Keep it for the next sync; the watermark stays below it.
        case keep
    }

    /// Starts a thread's verdicts. `listed` holds the `updated_at` of its versions in this listing; `failedNow`
    /// whether any of them failed to load in this sync.
    mutating func open(thread: String, listed: Set<String>, failedNow: Bool) -> Entry {
        let record = prior.removeValue(forKey: thread)
        let failures = (record?.failures ?? 0) + (failedNow ? 1 : 0)
        // The age limit counts from the first failure, not from a sync that stopped before asking.
        let since = record.flatMap { $0.failures > 0 ? $0.since : nil } ?? now
        let givingUp = failedNow && (failures >= giveUpAfterSyncs || now.timeIntervalSince(since) >= giveUpAfterAge)
        // Versions that failed before and are not listed any more: GitHub moved the thread on.
        let kept = (record?.superseded ?? []).filter { !listed.contains($0.updatedAt) }
        return Entry(
            id: thread, failures: failures, since: since, givingUp: givingUp, failedNow: failedNow, kept: kept)
    }

    /// A version of `thread` that is to be retried: `failed` when loading its subject failed (not merely left
    /// unasked because the sync stopped).
    func retry(_ version: Version, failed: Bool, in thread: inout Entry) -> Decision {
        if failed, thread.givingUp { return .giveUp }
        // Kept with what it says, in case the thread moves on before its subject loads.
        thread.kept.append(version)
        thread.waiting = true
        return .keep
    }

    /// Ends a thread's verdicts. Returns the versions to emit now from their notification: none while it waits;
    /// once it is settled, every version it left behind while failing.
    mutating func settle(_ thread: Entry) -> [Version] {
        guard thread.waiting else { return thread.kept }
        records[thread.id] = .init(since: thread.since, failures: thread.failures, superseded: thread.kept)
        if thread.failedNow { failedThreads += 1 }
        return []
    }

    /// Ends the sync for the threads it did not reach. A thread listed again by a complete listing, but no longer as
    /// something to fetch, left its versions behind for good: they are returned to be emitted, except those listed
    /// again (`listedIds` holds `{thread}:{updated_at}`). Any other record waits for the next sync.
    mutating func finish(
        listingComplete: Bool, listedThreads: Set<String>, listedIds: Set<String>
    ) -> [(thread: String, version: Version)] {
        var settled: [(thread: String, version: Version)] = []
        // In thread order: a retried sync emits what it settles in the same order (a dictionary's is per process).
        for (thread, record) in prior.sorted(by: { $0.key < $1.key }) {
            if listingComplete, listedThreads.contains(thread) {
                for version in record.superseded where !listedIds.contains("\(thread):\(version.updatedAt)") {
                    settled.append((thread, version))
                }
            } else {
                records[thread] = record
            }
        }
        prior = [:]
        return settled
    }
}
