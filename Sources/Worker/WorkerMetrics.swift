import Metrics

/// The worker's metrics, through swift-metrics so whatever backend the process bootstraps (Prometheus via the
/// Telemetry module) exposes them. GitHub request and rate-limit metrics come from the GitHub module.
struct WorkerMetrics: Sendable {
    let jobs: [JobResult.Outcome: Counter]
    let jobDuration = Metrics.Timer(label: "activity_sync_worker_job_duration_seconds", preferredDisplayUnit: .seconds)
    let scheduledToCommitted = Metrics.Timer(
        label: "activity_sync_worker_scheduled_to_committed_seconds", preferredDisplayUnit: .seconds)
    let commits = Counter(label: "activity_sync_worker_commits_total")
    let aborts = Counter(label: "activity_sync_worker_aborts_total")
    let assignedPartitions = Gauge(label: "activity_sync_worker_assigned_partitions")
    /// Reads of a state partition that failed and were retried (a slow state topic, an open transaction).
    let restoreRetries = Counter(label: "activity_sync_worker_restore_retries_total")
    /// Batches the cluster refused a record of (too large, malformed): split to find the job that made it.
    let rejectedBatches = Counter(label: "activity_sync_worker_rejected_batches_total")
    /// Times a partition was paused because what it holds until its next commit reached a limit (a slow job at
    /// its head).
    let pausedPartitions = Counter(label: "activity_sync_worker_partition_pauses_total")
    /// Token pairs a running sync refreshed and the worker stored before the sync used them.
    let credentialsStored = Counter(label: "activity_sync_worker_refreshed_credentials_stored_total")

    init() {
        var jobs: [JobResult.Outcome: Counter] = [:]
        for outcome in JobResult.Outcome.allCases {
            jobs[outcome] = Counter(
                label: "activity_sync_worker_jobs_total", dimensions: [("outcome", outcome.rawValue)])
        }
        self.jobs = jobs
    }

    func job(outcome: JobResult.Outcome, count: Int = 1) { jobs[outcome]?.increment(by: count) }

    /// A record the worker meant to write and did not; each one is also logged.
    enum DroppedRecord: String, Sendable {
        case deadLetter = "dead_letter"
        case activity
        case state
        case status
        /// A refreshed token pair that could not be sealed (the job fails instead of losing it silently).
        case refreshedCredentials = "refreshed_credentials"
    }

    /// A record written shortened so that it fits in a Kafka message.
    enum TruncatedRecord: String, Sendable {
        case deadLetter = "dead_letter"
        case activity
    }

    /// Static so that ``JobProcessor``, which has no ``WorkerMetrics``, counts into the same series; `factory` is
    /// the bootstrapped one unless a test gives its own.
    static func dropped(_ kind: DroppedRecord, factory: (any MetricsFactory)? = nil) {
        Counter(
            label: "activity_sync_worker_dropped_records_total", dimensions: [("kind", kind.rawValue)],
            factory: factory ?? MetricsSystem.factory
        ).increment()
    }

    static func truncated(_ kind: TruncatedRecord, factory: (any MetricsFactory)? = nil) {
        Counter(
            label: "activity_sync_worker_truncated_records_total", dimensions: [("kind", kind.rawValue)],
            factory: factory ?? MetricsSystem.factory
        ).increment()
    }

    func lag(partition: Int32, _ value: Int) {
        Gauge(label: "activity_sync_worker_consumer_lag", dimensions: [("partition", String(partition))]).record(value)
    }
}
