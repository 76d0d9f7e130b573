import SyncModel

/// What the worker knows of a job's account when the job is about to run: the account's record from accounts
/// partition p, read at least up to the job's own timestamp (see ``AccountDirectory``).
enum AccountLookup: Sendable, Hashable {
    /// The account's current record, with its sealed config, and the version of its bytes (nil in tests that build
    /// a record by hand: its statuses then hold no job back).
    case found(AccountRecord, version: AccountVersion? = nil)
    /// Not in the partition (never added, removed, unreadable, or written by a producer with another partitioner):
    /// the job is dead-lettered with this reason.
    case unknown(String)
    /// The accounts partition could not be read in time: the job fails (transient), nothing but its status written.
    case unavailable(String)
}
