public import Foundation
public import Kafka
public import Logging
import Metrics
public import ServiceLifecycle
import Synchronization
public import SyncModel

/// Settings of a scheduler process.
public struct SchedulerConfiguration: Sendable {
    public var kafka: KafkaConfiguration
    public var topics: TopicNames = .default
    /// Every scheduler of a deployment joins this group; the accounts topic's partitions are split among them.
    public var groupId = "activity-sync-scheduler"
    /// A scheduler that stops heartbeating for this long loses its partitions to the others.
    public var sessionTimeout: Duration = .seconds(10)
    public var policy = SchedulingPolicy()
    /// Which records are schedulable (known integrations, and the sealing keys when given).
    public var validator = AccountValidator()
    /// Added to the wall clock; a test hook to fire "tomorrow's" ticks now.
    public var clockOffset: Duration = .zero
    /// Most jobs handed to the producer in one batch.
    public var maxJobsPerBatch = 10_000
    /// Batches awaiting delivery reports at once; firing is not held up by a slow acknowledgement.
    public var maxInFlightBatches = 8
    /// Longest the timer sleeps, so accounts added meanwhile are picked up promptly.
    public var maxTimerSleep: Duration = .milliseconds(20)
    /// Limit for reading one accounts partition on assignment.
    public var loadTimeout: Duration = .seconds(120)
    /// Called after each batch of jobs is acknowledged (benchmarks, tests); runs on the publishing task.
    public var onPublished: (@Sendable (_ jobs: [DueJob], _ firedAt: Date, _ acknowledgedAt: Date) -> Void)?

    public init(kafka: KafkaConfiguration) { self.kafka = kafka }
}

/// A scheduler: owns the accounts of its accounts-topic partitions and fires each one's sync jobs on schedule.
///
/// Several schedulers share the work through a consumer group on the accounts topic (eager `range` assignor). On
/// `.assigned` the service reads those partitions from the beginning (last record per key wins, a tombstone
/// removes the account) and schedules them — including the one catch-up fire described on ``SchedulingCore`` —
/// then keeps applying updates from the group consumer. On `.revoked` or `.lost` it drops those accounts before
/// the rebalance completes, so two schedulers only ever overlap on a tick they both consider due, and then they
/// publish the same deterministic job id. Offsets are never committed: every owner reloads from the beginning.
///
/// Records that cannot be scheduled (not JSON, a bad cron, an unknown integration, no sealed config, a sealing
/// key this process lacks) are logged with the reason and skipped; a bad update leaves the previous version of
/// the account scheduled.
public final class SchedulerService: Service, Sendable {
    private let configuration: SchedulerConfiguration
    private let logger: Logger
    private let readiness: (@Sendable (_ component: String, _ ready: Bool) -> Void)?
    private let state: Mutex<State>
    private let metrics: SchedulerMetrics

    private struct State {
        var core: SchedulingCore
        /// Per owned partition, the next offset not yet applied (messages below it were loaded already).
        var applied: [Int32: Int64] = [:]
    }

    /// Components this service reports to readiness: its producer and its first loaded assignment.
    public static let readinessComponents = ["scheduler-producer", "scheduler-assignment"]

    /// - Parameter readiness: Told when the producer is up and the first assignment is loaded (``readinessComponents``).
    public init(
        configuration: SchedulerConfiguration, logger: Logger,
        readiness: (@Sendable (_ component: String, _ ready: Bool) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.readiness = readiness
        self.state = Mutex(State(core: SchedulingCore(policy: configuration.policy)))
        self.metrics = SchedulerMetrics()
    }

    /// Number of accounts this scheduler owns right now.
    public var accountsOwned: Int { state.withLock { $0.core.count } }

    private func now() -> Date {
        let offset = configuration.clockOffset.components
        return Date().addingTimeInterval(TimeInterval(offset.seconds) + TimeInterval(offset.attoseconds) * 1e-18)
    }

    public func run() async throws {
        var producerKafka = configuration.kafka
        producerKafka.clientId += "-scheduler-jobs"
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: producerKafka, idempotent: true), logger: logger)
        var consumerKafka = configuration.kafka
        consumerKafka.clientId += "-scheduler"
        let sessionMillis = configuration.sessionTimeout.components.seconds * 1000
            + configuration.sessionTimeout.components.attoseconds / 1_000_000_000_000_000
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(
                configuration: ConsumerConfiguration(
                    kafka: consumerKafka, groupId: configuration.groupId, isolationLevel: .readCommitted,
                    autoOffsetReset: .earliest, sessionTimeout: configuration.sessionTimeout,
                    heartbeatInterval: .milliseconds(max(100, min(3000, sessionMillis / 3))),
                    assignor: "range", maxBatchSize: 5000),
                logger: logger)
            try consumer.subscribe(topics: [configuration.topics.accounts])
        } catch {
            await producer.close(timeout: .seconds(5))
            throw error
        }
        readiness?("scheduler-producer", true)
        logger.info(
            "scheduler started",
            metadata: ["group": "\(configuration.groupId)", "accounts": "\(configuration.topics.accounts)"])
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await self.consume(consumer) }
                    group.addTask { try await self.fire(producer) }
                    _ = try await group.next()
                    group.cancelAll()
                    while !group.isEmpty { _ = try? await group.next() }
                }
            }
        } catch is CancellationError {
            // Graceful shutdown.
        } catch {
            logger.error("scheduler failed", metadata: ["error": "\(error)"])
            await consumer.close(timeout: .seconds(10))
            await producer.close(timeout: .seconds(10))
            throw error
        }
        logger.info("scheduler stopping")
        await consumer.close(timeout: .seconds(10))
        await producer.close(timeout: .seconds(10))
    }

    // MARK: - Accounts

    private func consume(_ consumer: KafkaConsumer) async throws {
        var firstAssignment = true
        for await event in consumer.events {
            if Task.isCancelled { break }
            switch event {
            case .assigned(let partitions):
                let mine = partitions.filter { $0.topic == configuration.topics.accounts }
                try await load(mine.map(\.partition))
                if firstAssignment {
                    firstAssignment = false
                    readiness?("scheduler-assignment", true)
                }
            case .revoked(let partitions), .lost(let partitions):
                let dropped = state.withLock { state in
                    for partition in partitions { state.applied.removeValue(forKey: partition.partition) }
                    return state.core.removePartitions(Set(partitions.map(\.partition)))
                }
                updateOwnedGauge()
                logger.info(
                    "partitions revoked",
                    metadata: ["partitions": "\(partitions.map(\.partition).sorted())", "accountsDropped": "\(dropped)"])
            case .messages(let messages):
                apply(messages, skippingLoaded: true)
            }
        }
    }

    /// Reads newly assigned partitions from the beginning and schedules their accounts.
    private func load(_ partitions: [Int32]) async throws {
        let started = ContinuousClock.now
        var loaded = 0
        // Two partitions at a time: parsing is the cost, and there are two cores.
        try await withThrowingTaskGroup(of: Int.self) { group in
            var pending = partitions.sorted()[...]
            func startNext(_ group: inout ThrowingTaskGroup<Int, any Error>) {
                guard let partition = pending.popFirst() else { return }
                group.addTask { try await self.loadPartition(partition) }
            }
            startNext(&group)
            startNext(&group)
            while let count = try await group.next() {
                loaded += count
                startNext(&group)
            }
        }
        state.withLock { $0.core.forgetParked() }
        updateOwnedGauge()
        logger.info(
            "partitions assigned and loaded",
            metadata: [
                "partitions": "\(partitions.sorted())", "records": "\(loaded)",
                "accountsOwned": "\(accountsOwned)", "took": "\(ContinuousClock.now - started)",
            ])
    }

    private func loadPartition(_ partition: Int32) async throws -> Int {
        var attempt = 0
        while true {
            attempt += 1
            let result = await readAccounts(partition)
            switch result {
            case .success(let messages):
                state.withLock { $0.applied[partition] = 0 }
                apply(messages, skippingLoaded: false)
                state.withLock { $0.applied[partition] = (messages.last?.offset ?? -1) + 1 }
                return messages.count
            case .failure(let error):
                guard attempt < 3, !Task.isCancelled else { throw error }
                logger.warning(
                    "reading accounts partition failed; retrying",
                    metadata: ["partition": "\(partition)", "error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func readAccounts(_ partition: Int32) async -> Result<[ConsumerMessage], KafkaError> {
        do {
            return .success(
                try await readPartitionToEnd(
                    configuration: configuration.kafka.forPartitionReads, topic: configuration.topics.accounts, partition: partition,
                    isolationLevel: .readCommitted, timeout: configuration.loadTimeout, logger: logger))
        } catch {
            return .failure(error)
        }
    }

    /// Validates outside the lock (parsing is the expensive part), then applies in chunks so the timer is never
    /// held up for long.
    private func apply(_ messages: [ConsumerMessage], skippingLoaded: Bool) {
        let validator = configuration.validator
        var start = messages.startIndex
        while start < messages.endIndex {
            let end = min(start + 2000, messages.endIndex)
            let outcomes = messages[start..<end].map { ($0, validator.validate(key: $0.key, value: $0.value)) }
            let now = now()
            let invalid: [(ConsumerMessage, String?, String)] = state.withLock { state in
                var invalid: [(ConsumerMessage, String?, String)] = []
                for (message, outcome) in outcomes {
                    if skippingLoaded {
                        guard let next = state.applied[message.partition], message.offset >= next else { continue }
                        state.applied[message.partition] = message.offset + 1
                    }
                    switch outcome {
                    case .upsert(let record, let expression):
                        state.core.upsert(
                            ScheduledAccount(
                                accountId: record.accountId, partition: message.partition,
                                integration: record.integration, schedule: expression,
                                sealedConfig: record.sealedConfig, enabled: record.settings.enabled),
                            now: now)
                    case .remove(let accountId):
                        state.core.remove(accountId)
                    case .invalid(let accountId, let reason):
                        invalid.append((message, accountId, reason))
                    }
                }
                return invalid
            }
            for (message, accountId, reason) in invalid {
                metrics.invalidRecords.increment()
                logger.warning(
                    "skipping account record: \(reason)",
                    metadata: [
                        "account": "\(accountId ?? "?")", "partition": "\(message.partition)",
                        "offset": "\(message.offset)",
                    ])
            }
            start = end
        }
        if skippingLoaded { updateOwnedGauge() }
    }

    private func updateOwnedGauge() {
        metrics.accountsOwned.record(accountsOwned)
    }

    // MARK: - Firing

    private func fire(_ producer: KafkaProducer) async throws {
        let jobsTopic = configuration.topics.jobs
        let maxSleep = configuration.maxTimerSleep
        var encoder = JobEncoder()
        try await withThrowingTaskGroup(of: Void.self) { publishes in
            var inFlight = 0
            while !Task.isCancelled {
                let now = now()
                let (due, earliest) = state.withLock { state in
                    (state.core.popDue(now: now, limit: configuration.maxJobsPerBatch), state.core.earliestDue())
                }
                guard !due.isEmpty else {
                    var sleep = maxSleep
                    if let earliest {
                        let untilDue = Duration.milliseconds(Int64(earliest.timeIntervalSince(now) * 1000))
                        sleep = max(.milliseconds(1), min(sleep, untilDue))
                    }
                    do { try await Task.sleep(for: sleep) } catch { break }
                    continue
                }
                var records: [ProducerRecord] = []
                records.reserveCapacity(due.count)
                for job in due {
                    metrics.scheduleLag.recordNanoseconds(
                        max(0, Int64(now.timeIntervalSince(job.dueAt) * 1_000_000_000)))
                    do {
                        records.append(
                            ProducerRecord(
                                topic: jobsTopic, key: Array(job.accountId.utf8), value: try encoder.encode(job)))
                    } catch {
                        logger.error("job could not be encoded", metadata: ["account": "\(job.accountId)"])
                    }
                }
                let catchUps = due.count(where: \.isCatchUp)
                if catchUps > 0 { metrics.catchUps.increment(by: catchUps) }
                if inFlight >= configuration.maxInFlightBatches {
                    try await publishes.next()
                    inFlight -= 1
                }
                inFlight += 1
                publishes.addTask { [logger, metrics, onPublished = configuration.onPublished] in
                    do {
                        _ = try await producer.send(records)
                        metrics.jobsPublished.increment(by: records.count)
                        onPublished?(due, now, Date())
                    } catch {
                        // librdkafka already retried (idempotently) until message.timeout.ms; the account's next
                        // tick (or a catch-up after a restart) covers the interval, since workers read everything
                        // since their watermark.
                        metrics.publishErrors.increment(by: records.count)
                        logger.error(
                            "publishing jobs failed",
                            metadata: ["jobs": "\(records.count)", "error": "\(error)"])
                    }
                }
            }
            while !publishes.isEmpty { _ = try? await publishes.next() }
        }
    }
}

/// The scheduler's metrics, named for Prometheus.
struct SchedulerMetrics: Sendable {
    let accountsOwned = Gauge(label: "activity_sync_scheduler_accounts_owned")
    let jobsPublished = Counter(label: "activity_sync_scheduler_jobs_published_total")
    let catchUps = Counter(label: "activity_sync_scheduler_catch_up_jobs_total")
    let publishErrors = Counter(label: "activity_sync_scheduler_publish_errors_total")
    let invalidRecords = Counter(label: "activity_sync_scheduler_invalid_account_records_total")
    /// Fire time minus due time (tick + spread offset).
    let scheduleLag = Metrics.Timer(label: "activity_sync_scheduler_schedule_lag_seconds")
}

extension KafkaConfiguration {
    /// librdkafka 2.0.2 refuses `rd_kafka_assign` on a consumer without `group.id` (`_UNKNOWN_GROUP`), even though
    /// a partition read joins no group and commits nothing; give it one unless the caller did.
    var forPartitionReads: KafkaConfiguration {
        var copy = self
        if copy.properties["group.id"] == nil { copy.properties["group.id"] = "activity-sync-partition-reader" }
        return copy
    }
}
