/// The topics activity-sync reads and writes, and how each must be created.
///
/// Partition alignment matters: accounts, jobs and state are keyed by account id with the same partitioner
/// (murmur2) and the same partition count, so partition p of each holds the same accounts. That is what lets a
/// worker restore exactly the accounts and states of the jobs partitions it was assigned (a co-partitioned join),
/// and jobs carry no secret.
public struct TopicSpec: Sendable, Hashable {
    public var name: String
    /// `cleanup.policy=compact`: only the last record per key matters (accounts, state).
    public var compacted: Bool
    /// Whether this topic must have the jobs topic's partition count.
    public var alignedWithJobs: Bool

    public init(name: String, compacted: Bool, alignedWithJobs: Bool) {
        self.name = name
        self.compacted = compacted
        self.alignedWithJobs = alignedWithJobs
    }

    /// The topic configs `topics create` sets.
    ///
    /// Compaction only ever cleans closed segments, and with the broker's defaults (`segment.ms` 7 days,
    /// `segment.bytes` 1 GiB) the active segment of a state partition holds every version of every account for a
    /// week: 1,000 accounts on `*/5` write ~2M versions (~2 GB) in that time, all of which a restoring worker reads.
    /// Rolling segments hourly or at 128 MiB and cleaning once a tenth of the log is dirty keeps a compacted
    /// partition near its live size plus one segment. (Workers and schedulers read it in bounded memory either
    /// way; this bounds the time a restore takes.)
    public var configs: [String: String] {
        guard compacted else { return [:] }
        return [
            "cleanup.policy": "compact", "segment.ms": "3600000", "segment.bytes": "134217728",
            "min.cleanable.dirty.ratio": "0.1",
        ]
    }
}

public struct TopicNames: Sendable, Hashable {
    public var accounts: String
    public var jobs: String
    public var activities: String
    public var state: String
    public var deadLetters: String
    public var status: String
    /// One record per consumed job: what it did (``RunRecord``).
    public var runs: String

    /// The default names; a prefix lets several deployments (or tests) share one cluster.
    public init(prefix: String = "activity-sync") {
        accounts = "\(prefix).accounts"
        jobs = "\(prefix).jobs"
        activities = "\(prefix).activities"
        state = "\(prefix).state"
        deadLetters = "\(prefix).jobs.dlq"
        status = "\(prefix).status"
        runs = "\(prefix).runs"
    }

    public static let `default` = TopicNames()

    /// Every topic with its creation rules, in a stable order.
    public var all: [TopicSpec] {
        [
            TopicSpec(name: accounts, compacted: true, alignedWithJobs: true),
            TopicSpec(name: jobs, compacted: false, alignedWithJobs: true),
            TopicSpec(name: activities, compacted: false, alignedWithJobs: false),
            TopicSpec(name: state, compacted: true, alignedWithJobs: true),
            TopicSpec(name: deadLetters, compacted: false, alignedWithJobs: false),
            // Aligned so that a scheduler owning accounts partition p gets status partition p with it (range
            // assignor over both topics) and can hold back accounts waiting for re-authentication.
            TopicSpec(name: status, compacted: true, alignedWithJobs: true),
            TopicSpec(name: runs, compacted: false, alignedWithJobs: false),
        ]
    }
}
