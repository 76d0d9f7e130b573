import Foundation
public import Kafka
public import Logging
public import SyncModel
import Synchronization

/// Waits for the run records (``RunRecord``, on `<prefix>.runs`) of jobs one has just published: what `enqueue
/// --wait` prints.
///
/// Call ``start()`` *before* publishing: it notes where each runs partition ends, so only records written after
/// that are read, and the wait costs the new records, not the topic's history. Run records are written in the
/// same transaction as their job's output, so one seen with `read_committed` is a job whose output committed.
public final class RunWaiter: Sendable {
    private let follower: PartitionFollower
    private let positions: Mutex<[Int32: Int64]>

    private init(follower: PartitionFollower, positions: [Int32: Int64]) {
        self.follower = follower
        self.positions = Mutex(positions)
    }

    /// Notes the end of every partition of the runs topic.
    /// - Throws: ``AccountsError`` when the runs topic does not exist; `KafkaError` when it cannot be read.
    public static func start(
        kafka: KafkaConfiguration, topics: TopicNames, timeout: Duration = .seconds(30), logger: Logger
    ) async throws -> RunWaiter {
        let counts = try await KafkaAdmin.listTopics(configuration: kafka, timeout: timeout, logger: logger)
        guard let count = counts[topics.runs], count > 0 else {
            throw AccountsError.missingTopic(topics.runs)
        }
        let follower = try PartitionFollower(
            configuration: kafka, topic: topics.runs, isolationLevel: .readCommitted, logger: logger)
        do {
            let ends = try await follower.ends(of: Array(0..<Int32(count)), timeout: timeout)
            return RunWaiter(follower: follower, positions: ends)
        } catch {
            await follower.close()
            throw error
        }
    }

    /// Reads new run records until one of each job has arrived or `timeout` passed; then closes.
    /// - Returns: the run record of each job that has one (by job id); jobs missing from it had none in time.
    public func wait(for jobs: [SyncJob], timeout: Duration) async throws -> [String: RunRecord] {
        do {
            let found = try await read(for: jobs, timeout: timeout)
            await follower.close()
            return found
        } catch {
            await follower.close()
            throw error
        }
    }

    /// Closes without waiting (when publishing failed).
    public func close() async { await follower.close() }

    private func read(for jobs: [SyncJob], timeout: Duration) async throws -> [String: RunRecord] {
        let deadline = ContinuousClock.now + timeout
        let wanted = Set(jobs.map(\.jobId))
        let found = Mutex<[String: RunRecord]>([:])
        while found.withLock({ $0.count }) < wanted.count {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { break }
            let from = positions.withLock { $0 }
            let ends = try await follower.catchUp(from: from, timeout: min(remaining, .seconds(30))) { batch in
                for message in batch {
                    guard let value = message.value, let run = try? RunRecord.decodeMessage(value),
                        let jobId = run.jobId, wanted.contains(jobId)
                    else { continue }
                    found.withLock { $0[jobId] = $0[jobId] ?? run }
                }
            }
            positions.withLock { $0.merge(ends) { _, new in new } }
            if found.withLock({ $0.count }) < wanted.count { try await Task.sleep(for: .milliseconds(200)) }
        }
        return found.withLock { $0 }
    }
}
