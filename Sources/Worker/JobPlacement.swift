import Kafka
import SyncModel

/// Where a job may run: only in the jobs partition its account id hashes to.
///
/// The worker owning jobs partition p holds the states of state partition p, and the producers put an account's
/// state there by murmur2 of its id. A job that some other producer placed by its own partitioner (librdkafka's
/// `consistent_random`, Sarama's FNV, round-robin, an explicit partition) lands where the account has no state:
/// run, it would sync from empty state, re-emit the account's whole first-sync window and leave a second copy of
/// its state in the wrong partition. It is dead-lettered instead, naming the right partition.
struct JobPlacement: Sendable, Hashable {
    /// The jobs topic's partition count, read when the worker starts.
    let partitionCount: Int32

    /// The partition `accountId`'s jobs and state belong in.
    func partition(of accountId: String) -> Int32 {
        KeyPartitioner.murmur2(Array(accountId.utf8), partitionCount: partitionCount)
    }

    /// Why `job` may not run in `partition`, or nil when it may.
    func poison(for job: SyncJob, in partition: Int32) -> Poison? {
        let expected = self.partition(of: job.accountId)
        guard expected != partition else { return nil }
        return Poison(
            .wrongPartition,
            "account \(job.accountId) belongs in jobs partition \(expected) (murmur2 of the account id over "
                + "\(partitionCount) partitions), where its state lives; this job arrived in partition \(partition). "
                + "Produce jobs keyed by accountId with the murmur2 partitioner (librdkafka's murmur2_random, the "
                + "Java client's default) and no explicit partition")
    }

    /// The placement for topics as the cluster lists them (name → partition count), checking that jobs, state and
    /// accounts are co-partitioned: the worker owning jobs partition p reads the accounts and states of partition p.
    /// - Throws: ``WorkerError`` naming the topic and the fix when one is missing or the counts differ.
    static func check(topics: [String: Int], names: TopicNames) throws(WorkerError) -> JobPlacement {
        guard let jobCount = topics[names.jobs], jobCount > 0 else {
            throw WorkerError.topics(
                "the jobs topic \(names.jobs) does not exist; create the topics first (activity-sync topics create)")
        }
        // Status too: schedulers read status partition p beside accounts partition p (the range assignor pairs them
        // only when the counts are equal) to hold back accounts waiting for re-authentication.
        for (name, role) in [(names.state, "state"), (names.accounts, "accounts"), (names.status, "status")] {
            guard let count = topics[name], count > 0 else {
                throw WorkerError.topics(
                    "the \(role) topic \(name) does not exist; create it with \(jobCount) partitions, like "
                        + "\(names.jobs) (activity-sync topics create --partitions \(jobCount))")
            }
            guard count == jobCount else {
                throw WorkerError.topics(
                    "\(names.jobs) has \(jobCount) partitions and \(name) has \(count): they must be equal, because the "
                        + "\(["state": "state", "status": "status"][role] ?? "account record") of the accounts in jobs "
                        + "partition p lives in \(role) partition p (same key, murmur2). Give both the same count (adding "
                        + "partitions moves "
                        + "accounts: do it only with schedulers and workers stopped, then write every account again "
                        + "with activity-sync accounts import and start with an empty state topic)")
            }
        }
        // Written in every job's transaction: missing, every transaction would fail and no job would commit.
        for name in [names.activities, names.deadLetters, names.runs] where (topics[name] ?? 0) == 0 {
            throw WorkerError.topics(
                "the topic \(name) does not exist; create the missing topics (activity-sync topics create --partitions "
                    + "\(jobCount) keeps the existing ones) and start the worker again")
        }
        return JobPlacement(partitionCount: Int32(jobCount))
    }
}
