public import Foundation
public import Kafka
public import SyncModel

/// How a worker writes its output.
public enum DeliveryMode: String, Sendable, CaseIterable {
    /// Activities, state and consumed offsets in one Kafka transaction: each activity is visible once.
    case exactlyOnce = "exactly-once"
    /// Activities, then state, then the offset commit: a crash can repeat activities (same ids), never lose
    /// them. For brokers without transactions, and the embedded cluster, whose transactions are not real.
    case atLeastOnce = "at-least-once"
}

/// Everything a worker process needs to know. Defaults suit production; tests shorten the timeouts.
public struct WorkerConfiguration: Sendable {
    public var kafka: KafkaConfiguration
    /// Names the worker: its transactional.id is `activity-sync-worker-{id}`, so a restarted worker with the
    /// same id fences its zombie predecessor.
    public var workerId: String
    public var topics = TopicNames()
    public var groupId = "activity-sync-workers"
    /// Accounts synced at the same time.
    public var concurrency = 64
    public var delivery: DeliveryMode = .exactlyOnce
    /// Kafka Streams-style commit interval: output waits at most this long before it is committed.
    public var commitInterval: Duration = .milliseconds(100)
    /// A transaction is committed early once this many jobs finished.
    public var maxJobsPerTransaction = 500
    public var sessionTimeout: Duration = .seconds(10)
    /// On SIGTERM: how long in-flight jobs may run before they are cancelled.
    public var shutdownDeadline: Duration = .seconds(20)
    /// On revocation: how long jobs of revoked partitions may run before they are abandoned to the next owner.
    public var revocationDeadline: Duration = .seconds(15)
    public var syncTimeout: Duration = .seconds(60)
    /// Consumed jobs held in memory (running, queued or waiting to commit) before consumption pauses.
    public var maxBufferedJobs = 20_000
    /// A partition stops being consumed when it holds this many jobs not yet committed (queued, running, or
    /// finished behind an earlier job that still runs), until half of them are committed.
    public var maxUncommittedJobsPerPartition = 2_000
    /// …or when the finished output it holds until its next commit reaches this many bytes. Together: a worker
    /// holds at most its partitions × this much output, whatever one slow job at a partition's head holds up.
    public var maxUncommittedBytesPerPartition = 16 << 20
    /// When an account's job finishes and several of its ticks wait behind it (a backlog after an outage), only the
    /// newest runs; the older ones are committed as `coalesced` with their run records. An outage of K ticks then
    /// costs each account at most two syncs, not K. Resync jobs always run.
    public var coalesceBacklog = true
    /// An account whose syncs fail in a row waits this long after its first failure before the next attempt,
    /// doubling per failure up to `maxFailureBackoff` (±20 % per account); ticks in between are skipped.
    public var failureBackoff: Duration = .seconds(60)
    public var maxFailureBackoff: Duration = .seconds(6 * 3600)
    /// An account failing for this long gets no attempt (`auto_paused`) until its record changes: reconnected, or
    /// `accounts resume`.
    public var autoPauseAfter: Duration = .seconds(7 * 86_400)
    /// How long one read of a state partition may take; it waits for transactions below the high watermark to
    /// resolve, so keep it above `transactionTimeout`.
    public var restoreTimeout: Duration = .seconds(120)
    /// A failed restore is retried with capped backoff for this long (the worker is not ready meanwhile) before
    /// the worker gives up. Keep it below the consumer's `max.poll.interval.ms` (300 s).
    public var restoreRetryLimit: Duration = .seconds(240)
    /// State partitions read at once, each with a bounded fetch buffer, so a large assignment cannot exhaust
    /// memory or the brokers.
    public var restoreConcurrency = 4
    /// librdkafka's prefetch per state partition being read. A restore holds at most `restoreConcurrency` times
    /// this plus the newest record of each account: 4 × 8 MiB and ~1.2 KB per account by default, whatever the
    /// length of the state log.
    public var restoreBufferBytes = 8 << 20
    /// Static group membership: the consumer's `group.instance.id` is the transactional id, so a worker restarted
    /// under the same `--id` takes its partitions back without a rebalance (and without waiting for its dead
    /// predecessor's session to time out). Off: dynamic membership, a leaving worker's partitions move at once.
    public var staticMembership = true
    public var transactionTimeout: Duration = .seconds(30)
    /// Called after every successful commit (for benchmarks and tests): the jobs and when they finished.
    public var onCommit: (@Sendable (CommitReport) -> Void)?
    /// Told when the worker becomes ready (producer initialised, subscribed) and when it stops being ready.
    public var onReadinessChange: (@Sendable (Bool) -> Void)?
    /// The largest record the worker writes, in bytes: key, value and headers, plus an allowance for Kafka's
    /// per-record overhead. Larger output is shortened (dead letters, activity texts) or refused (a state record
    /// turns its job into a dead letter), so no input can make a transaction fail for good.
    ///
    /// - Important: must not exceed the output topics' `max.message.bytes` (broker default 1,048,588). The
    ///   producer's `message.max.bytes` (librdkafka default 1,000,000) is raised to match when this is larger,
    ///   unless `kafka.properties` sets it.
    public var maxRecordBytes = 1_000_000

    /// The Kafka settings of the worker's producer: `kafka`, with `message.max.bytes` room for `maxRecordBytes`.
    var producerKafka: KafkaConfiguration {
        var kafka = self.kafka
        if maxRecordBytes > 1_000_000, kafka.properties["message.max.bytes"] == nil {
            kafka.properties["message.max.bytes"] = String(maxRecordBytes + 64 * 1024)
        }
        return kafka
    }

    public var transactionalId: String { "activity-sync-worker-\(workerId)" }

    /// How long the consumer holds a rebalance for this worker to finish with revoked partitions: the running jobs'
    /// `revocationDeadline`, then the worst case of a batch being written — delivery (bounded by
    /// `transactionTimeout`) and send-offsets, commit and abort, each resumed for up to `transactionTimeout` after
    /// a call of up to 10 s — and a margin. Releasing the partitions earlier would hand them over with a
    /// transaction still open.
    var revocationHandshakeTimeout: Duration {
        revocationDeadline + transactionTimeout + (transactionTimeout + .seconds(10)) * 3 + .seconds(10)
    }

    public init(kafka: KafkaConfiguration, workerId: String) {
        self.kafka = kafka
        self.workerId = workerId
    }
}

/// What one commit made durable.
public struct CommitReport: Sendable {
    public var jobCount: Int
    public var recordCount: Int
    public var committedAt: Date
    /// `scheduledAt` of each committed job that ran (not poison), for scheduled→committed latency.
    public var scheduledAt: [Date]
}

/// The Worker module's one error type: why a worker stopped, and what the operator does about it.
public struct WorkerError: Error, CustomStringConvertible, Sendable {
    private enum Code: Sendable {
        case fenced
        case kafkaFatal
        case transactionFailed
        case transactionExpired
        case restoreFailed
        case kafka
        case topics
    }

    private let code: Code
    public let message: String

    public var description: String {
        switch code {
        case .fenced:
            "worker stopped: \(message). Another process with the same --id took over (its transactional.id or "
                + "group.instance.id); do not run two workers with one id."
        case .kafkaFatal:
            "worker stopped: \(message). The Kafka client hit an unrecoverable error; restart the worker (it resumes "
                + "from the last commit) and check the brokers' logs."
        case .transactionFailed:
            "worker stopped: \(message). Check the brokers; restarting resumes from the last commit."
        case .transactionExpired:
            "worker stopped: \(message). The broker aborted a transaction that stayed open longer than "
                + "transaction.timeout.ms (the brokers were slow or unreachable) and bumped this producer's epoch; no "
                + "other worker has this id. Restarting resumes from the last commit."
        case .restoreFailed:
            "could not restore state: \(message). Check that the state topic exists and is readable, and that no "
                + "transaction on it stays open longer than transaction.timeout.ms."
        case .kafka: "Kafka failed: \(message)"
        case .topics: "worker cannot start: \(message)"
        }
    }

    /// True when another process took over this worker's transactional id: exit, never retry (exit code 3).
    public var isFenced: Bool { code == .fenced }

    /// The process exit code for this reason: 3 when fenced (restarting would only fence the other one back),
    /// 1 otherwise.
    public var exitCode: Int32 { isFenced ? 3 : 1 }

    static func fenced(_ message: String) -> WorkerError { WorkerError(code: .fenced, message: message) }
    static func kafkaFatal(_ message: String) -> WorkerError { WorkerError(code: .kafkaFatal, message: message) }
    static func transactionFailed(_ message: String) -> WorkerError {
        WorkerError(code: .transactionFailed, message: message)
    }
    /// The broker timed a transaction out and fenced this producer's epoch; not another worker (exit code 1).
    static func transactionExpired(_ message: String) -> WorkerError {
        WorkerError(code: .transactionExpired, message: message)
    }
    static func restoreFailed(_ message: String) -> WorkerError { WorkerError(code: .restoreFailed, message: message) }
    static func kafka(_ message: String) -> WorkerError { WorkerError(code: .kafka, message: message) }
    static func topics(_ message: String) -> WorkerError { WorkerError(code: .topics, message: message) }
}
