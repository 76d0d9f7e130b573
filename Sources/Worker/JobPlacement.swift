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

    /// The placement for topics as the cluster lists them (name → partition count), checking that jobs and state
    /// are co-partitioned.
    /// - Throws: ``WorkerError`` naming the topic and the fix when either is missing or their counts differ.
    static func check(topics: [String: Int], jobs: String, state: String) throws(WorkerError) -> JobPlacement {
        guard let jobCount = topics[jobs], jobCount > 0 else {
            throw WorkerError.topics(
                "the jobs topic \(jobs) does not exist; create the topics first (activity-sync topics create)")
        }
        guard let stateCount = topics[state], stateCount > 0 else {
            throw WorkerError.topics(
                "the state topic \(state) does not exist; create it with \(jobCount) partitions, like \(jobs) "
                    + "(activity-sync topics create --partitions \(jobCount))")
        }
        guard jobCount == stateCount else {
            throw WorkerError.topics(
                "\(jobs) has \(jobCount) partitions and \(state) has \(stateCount): they must be equal, because the "
                    + "state of the accounts in jobs partition p lives in state partition p. Give both the same count "
                    + "(adding partitions to either moves accounts: do it only with the workers stopped and the state "
                    + "topic empty)")
        }
        return JobPlacement(partitionCount: Int32(jobCount))
    }
}
