public import Foundation
#if canImport(Glibc)
    import Glibc
#endif
public import Kafka
public import Logging
public import Metrics
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
    /// Which records are schedulable (known integrations, a cron schedule that parses).
    public var validator: AccountValidator
    /// Added to the wall clock; a test hook to fire "tomorrow's" ticks now.
    public var clockOffset: Duration = .zero
    /// Replaces the wall clock entirely (benchmarks jump it to make every account due at once).
    public var clock: (@Sendable () -> Date)?
    /// Most jobs handed to the producer in one batch.
    public var maxJobsPerBatch = 10_000
    /// Accounts partitions read at once on assignment (each read is its own client, mostly waiting on I/O).
    public var loadConcurrency = 8
    /// Batches awaiting delivery reports at once; firing is not held up by a slow acknowledgement.
    public var maxInFlightBatches = 8
    /// Longest the timer sleeps, so accounts added meanwhile are picked up promptly.
    public var maxTimerSleep: Duration = .milliseconds(20)
    /// Limit for reading one accounts partition on assignment.
    public var loadTimeout: Duration = .seconds(120)
    /// Called after each batch of jobs is acknowledged (benchmarks, tests), with the fire and acknowledgement
    /// times on the scheduler's clock; runs on the publishing task.
    public var onPublished: (@Sendable (_ jobs: [DueJob], _ firedAt: Date, _ acknowledgedAt: Date) -> Void)?
    /// Where the metrics go; nil is the bootstrapped `MetricsSystem.factory` (tests pass their own).
    public var metricsFactory: (any MetricsFactory)?

    /// - Parameter validator: says which records are schedulable; its integration keys come from the
    ///   integration catalog, which this module does not know.
    public init(kafka: KafkaConfiguration, validator: AccountValidator) {
        self.kafka = kafka
        self.validator = validator
    }
}

/// A scheduler: owns the accounts of its accounts-topic partitions and fires each one's sync jobs on schedule.
///
/// Several schedulers share the work through a consumer group on the accounts topic (eager `range` assignor). On
/// `.assigned` the service reads those partitions from the beginning (last record per key wins, a tombstone
/// removes the account) and schedules them — including the one catch-up fire described on ``SchedulingCore`` —
/// then keeps applying updates from the group consumer.
///
/// The group also subscribes to the status topic, whose partition count equals the accounts topic's (`topics
/// create` makes them so and workers refuse to start otherwise), so the `range` assignor gives each scheduler
/// status partition p with accounts partition p: the statuses of exactly its accounts. Those are read before the
/// accounts (so a held account gets no catch-up fire) and followed from then on; of a status only the record
/// version of a `needs_reauth` is kept (``SchedulingCore/applyStatus(of:holdingRecord:statusPartition:now:)``): it
/// stops the account's jobs while its record is that version, until the record changes. Were the counts unequal,
/// some accounts' statuses would go to another scheduler and those accounts would keep getting jobs, as before.
///
/// On `.revoked` or `.lost` it drops those accounts before the rebalance completes, so two schedulers only ever
/// overlap on a tick they both consider due, and then they publish the same deterministic job id. Offsets are never committed: every owner reloads from the beginning.
///
/// Records that cannot be scheduled (not JSON, a bad cron, an unknown integration) are logged with the reason and
/// skipped; a bad update leaves the previous version of the account scheduled. The sealed config is neither read
/// nor kept: jobs carry none, the worker reads the account's current record with each job and dead-letters a job
/// whose config it cannot use.
public final class SchedulerService: Service, Sendable {
    private let configuration: SchedulerConfiguration
    private let logger: Logger
    private let readiness: (@Sendable (_ component: String, _ ready: Bool) -> Void)?
    private let state: Mutex<State>
    private let metrics: SchedulerMetrics

    private struct State {
        var core: SchedulingCore
        /// Per owned accounts or status partition, the next offset not yet applied (messages below it were loaded
        /// already).
        var applied: [TopicPartition: Int64] = [:]
    }

    /// Components this service reports to readiness: its producer and its first loaded assignment.
    public static let readinessComponents = ["scheduler-producer", "scheduler-assignment"]

    /// - Parameter readiness: Told when the producer is up and the first assignment is loaded
    ///   (``readinessComponents``).
    public init(
        configuration: SchedulerConfiguration, logger: Logger,
        readiness: (@Sendable (_ component: String, _ ready: Bool) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.readiness = readiness
        self.state = Mutex(State(core: SchedulingCore(policy: configuration.policy)))
        self.metrics = SchedulerMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory)
    }

    /// Number of accounts this scheduler owns right now.
    public var accountsOwned: Int { state.withLock { $0.core.count } }

    private func now() -> Date {
        if let clock = configuration.clock { return clock() }
        return Date().addingTimeInterval(configuration.clockOffset.timeInterval)
    }

    public func run() async throws {
        var producerKafka = configuration.kafka
        producerKafka.clientId += "-scheduler-jobs"
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: producerKafka, idempotent: true), logger: logger)
        var consumerKafka = configuration.kafka
        consumerKafka.clientId += "-scheduler"
        // The group consumer re-reads each partition from the beginning (everything below the loaded offset is
        // skipped); a small prefetch queue keeps that from costing memory.
        if consumerKafka.properties["queued.max.messages.kbytes"] == nil {
            consumerKafka.properties["queued.max.messages.kbytes"] = "8192"
        }
        let sessionMillis = configuration.sessionTimeout.wholeMilliseconds
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(
                configuration: ConsumerConfiguration(
                    kafka: consumerKafka, groupId: configuration.groupId, isolationLevel: .readCommitted,
                    autoOffsetReset: .earliest, sessionTimeout: configuration.sessionTimeout,
                    heartbeatInterval: .milliseconds(max(100, min(3000, sessionMillis / 3))),
                    assignor: "range", maxBatchSize: 5000),
                logger: logger)
            // Status too: partition p of it holds the statuses of accounts partition p's accounts (see the type).
            try consumer.subscribe(topics: [configuration.topics.accounts, configuration.topics.status])
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
            case .assigned(let partitions, _):
                // Statuses first: an account held for re-authentication is then held from the moment it is loaded,
                // and gets no catch-up fire.
                let statuses = partitions.filter { $0.topic == configuration.topics.status }
                try await loadStatuses(statuses.map(\.partition))
                let mine = partitions.filter { $0.topic == configuration.topics.accounts }
                try await load(mine.map(\.partition))
                if firstAssignment {
                    firstAssignment = false
                    readiness?("scheduler-assignment", true)
                }
            case .revoked(let partitions), .lost(let partitions):
                let accounts = partitions.filter { $0.topic == configuration.topics.accounts }.map(\.partition)
                let statuses = partitions.filter { $0.topic == configuration.topics.status }.map(\.partition)
                let now = now()
                let dropped = state.withLock { state in
                    for partition in partitions { state.applied.removeValue(forKey: partition) }
                    let dropped = state.core.removePartitions(Set(accounts))
                    state.core.forgetStatuses(ofPartitions: Set(statuses), now: now)
                    return dropped
                }
                updateOwnedGauge()
                logger.info(
                    "partitions revoked",
                    metadata: [
                        "partitions": "\(partitions.map(\.partition).sorted())", "accountsDropped": "\(dropped)",
                    ])
            case .messages(let messages):
                apply(messages, skippingLoaded: true)
            case .fatal(let error):
                throw error
            }
        }
    }

    /// Reads newly assigned partitions from the beginning and schedules their accounts.
    private func load(_ partitions: [Int32]) async throws {
        let started = ContinuousClock.now
        let loaded = try await readEachPartition(partitions, concurrency: configuration.loadConcurrency) {
            try await self.loadPartition($0)
        }.reduce(0) { $0 + $1.result }
        state.withLock { $0.core.forgetParked() }
        updateOwnedGauge()
        #if canImport(Glibc)
            // Loading parsed every record of the partitions and freed the buffers again; glibc keeps such freed memory
            // in its per-thread arenas, so hand it back to the system or RSS stays at the loading peak.
            Self.releaseFreedMemory()
        #endif
        logger.info(
            "partitions assigned and loaded",
            metadata: [
                "partitions": "\(partitions.sorted())", "records": "\(loaded)",
                "accountsOwned": "\(accountsOwned)", "took": "\(ContinuousClock.now - started)",
            ])
    }

    /// Waits between reads of one accounts partition: 1 s doubling to 30 s.
    static let loadBackoff = Backoff(initial: .seconds(1), maximum: .seconds(30))
    /// Reads of one accounts partition before the scheduler gives up (about 3 minutes of capped backoff).
    static let loadAttempts = 10

    private func loadPartition(_ partition: Int32) async throws -> Int {
        var attempt = 0
        let owned = TopicPartition(topic: configuration.topics.accounts, partition: partition)
        while true {
            attempt += 1
            state.withLock { $0.applied[owned] = 0 }
            let counted = RecordCount()
            let result = await readAccounts(partition) { batch in
                // On the reading thread, batch by batch: a partition's records are never all held at once.
                // Applying is idempotent in offset order, so a retried read may apply some records twice.
                counted.records += batch.count
                self.apply(batch, skippingLoaded: false)
            }
            switch result {
            case .success(let end):
                if attempt > 1 { readiness?("scheduler-load", true) }
                state.withLock { $0.applied[owned] = end }
                return counted.records
            case .failure(let error):
                // A broker outage or a slow large partition is worth minutes of retrying: giving up ends the
                // process, and its partitions would move to the next scheduler, which may fail the same way.
                guard attempt < Self.loadAttempts, !Task.isCancelled else { throw error }
                readiness?("scheduler-load", false)
                let backoff = Self.loadBackoff.delay(afterFailures: attempt)
                logger.warning(
                    "reading accounts partition failed; retrying",
                    metadata: [
                        "partition": "\(partition)", "attempt": "\(attempt)", "retryIn": "\(backoff)",
                        "error": "\(error)",
                    ])
                try await Task.sleep(for: backoff)
            }
        }
    }

    /// Reads newly assigned status partitions from the beginning, keeping the record version of each account whose
    /// newest status is `needs_reauth` (the accounts, loaded next, are held while their record is that version).
    ///
    /// A partition that cannot be read is logged and not retried here: the group consumer, which starts at the
    /// beginning too, applies its statuses as they come (meanwhile its held accounts may get their catch-up job).
    private func loadStatuses(_ partitions: [Int32]) async throws {
        guard !partitions.isEmpty else { return }
        let started = ContinuousClock.now
        // A failed read is not retried: the statuses still arrive through the group consumer, and meanwhile those
        // accounts only keep getting jobs, as before statuses were read at all.
        _ = try await readEachPartition(partitions, concurrency: configuration.loadConcurrency) { partition in
            let owned = TopicPartition(topic: self.configuration.topics.status, partition: partition)
            self.state.withLock { $0.applied[owned] = 0 }
            switch await self.readPartition(
                partition, of: self.configuration.topics.status,
                onBatch: {
                    self.applyStatuses($0, skippingLoaded: false)
                })
            {
            case .success(let end):
                self.state.withLock { $0.applied[owned] = end }
            case .failure(let error):
                self.logger.warning(
                    "reading a status partition failed; its needs_reauth accounts keep getting jobs",
                    metadata: ["partition": "\(partition)", "error": "\(error)"])
            }
        }
        updateOwnedGauge()
        logger.info(
            "status partitions loaded",
            metadata: [
                "partitions": "\(partitions.sorted())", "took": "\(ContinuousClock.now - started)",
                "needsReauth": "\(state.withLock { $0.core.judgedCount })",
            ])
    }

    /// Streams one accounts partition into `onBatch`; returns the offset the read ended at.
    private func readAccounts(
        _ partition: Int32, onBatch: @escaping @Sendable ([ConsumerMessage]) -> Void
    ) async -> Result<Int64, KafkaError> {
        await readPartition(partition, of: configuration.topics.accounts, onBatch: onBatch)
    }

    private func readPartition(
        _ partition: Int32, of topic: String, onBatch: @escaping @Sendable ([ConsumerMessage]) -> Void
    ) async -> Result<Int64, KafkaError> {
        do {
            // One partition by number: no metadata request per read, and a missing partition is an error.
            return .success(
                try await readPartitionToEnd(
                    configuration: configuration.kafka.forPartitionReads, topic: topic,
                    partition: partition, isolationLevel: .readCommitted, timeout: configuration.loadTimeout,
                    maxBufferedBytes: 4 << 20, batchBytes: 512 << 10, logger: logger, onBatch: onBatch))
        } catch {
            return .failure(error)
        }
    }

    /// Records seen by one partition's load; written on its reading thread only, read after the read returned.
    private final class RecordCount: @unchecked Sendable {
        var records = 0
    }

    /// The group consumer starts each partition at the beginning and so re-delivers what the load already applied;
    /// drops those before paying for parsing them again.
    private func unapplied(_ messages: [ConsumerMessage]) -> [ConsumerMessage] {
        let applied = state.withLock { $0.applied }
        return messages.filter { message in
            applied[TopicPartition(topic: message.topic, partition: message.partition)].map { message.offset >= $0 }
                ?? false
        }
    }

    /// Claims `message` for applying: false when the load (or an earlier batch) applied it already. Under the lock.
    private static func claim(_ message: ConsumerMessage, in state: inout State) -> Bool {
        let owned = TopicPartition(topic: message.topic, partition: message.partition)
        guard let next = state.applied[owned], message.offset >= next else { return false }
        state.applied[owned] = message.offset + 1
        return true
    }

    /// Applies status records: of each only whether it holds its account back (a `needs_reauth` naming a record
    /// version). Most statuses say `ok` or `failing` and are not decoded at all.
    private func applyStatuses(_ incoming: [ConsumerMessage], skippingLoaded: Bool) {
        let messages = skippingLoaded ? unapplied(incoming) : incoming
        guard !messages.isEmpty else { return }
        let judged = messages.map { message -> (String, AccountVersion?)? in
            guard let key = message.key else { return nil }
            return (String(decoding: key, as: UTF8.self), message.value.flatMap(Self.reauthVersion))
        }
        let now = now()
        state.withLock { state in
            for (message, judged) in zip(messages, judged) {
                if skippingLoaded, !Self.claim(message, in: &state) { continue }
                guard let (accountId, version) = judged else { continue }
                state.core.applyStatus(
                    of: accountId, holdingRecord: version, statusPartition: message.partition, now: now)
            }
        }
        if skippingLoaded { updateOwnedGauge() }
    }

    private static let needsReauthBytes = Array(#""needs_reauth""#.utf8)

    /// The record version a `needs_reauth` status was judged on; nil for any other status, one without a version
    /// (written before statuses carried it) or a value that is not a status.
    static func reauthVersion(_ value: [UInt8]) -> AccountVersion? {
        guard value.firstRange(of: needsReauthBytes) != nil,
            let status = try? WireFormat.decode(StatusFields.self, from: value), status.type == "status",
            status.data.status == AccountStatus.Status.needsReauth.rawValue
        else { return nil }
        return status.data.accountVersion.flatMap(AccountVersion.init)
    }

    /// What the scheduler reads of `{"type":"status","data":{…}}`.
    private struct StatusFields: Decodable {
        struct Data: Decodable {
            var status: String
            var accountVersion: String?
        }
        var type: String
        var data: Data
    }

    /// Routes group-consumer or load batches to the accounts or the status path.
    private func apply(_ incoming: [ConsumerMessage], skippingLoaded: Bool) {
        let statusTopic = configuration.topics.status
        guard incoming.contains(where: { $0.topic == statusTopic }) else {
            applyAccounts(incoming, skippingLoaded: skippingLoaded)
            return
        }
        // Accounts first: a status in the same batch may name the record version just read.
        applyAccounts(incoming.filter { $0.topic != statusTopic }, skippingLoaded: skippingLoaded)
        applyStatuses(incoming.filter { $0.topic == statusTopic }, skippingLoaded: skippingLoaded)
    }

    /// Validates outside the lock (parsing is the expensive part), then applies in chunks so the timer is never
    /// held up for long.
    private func applyAccounts(_ incoming: [ConsumerMessage], skippingLoaded: Bool) {
        let validator = configuration.validator
        var messages = incoming
        if skippingLoaded {
            messages = unapplied(messages)
            if messages.isEmpty { return }
        }
        var start = messages.startIndex
        while start < messages.endIndex {
            let end = min(start + 2000, messages.endIndex)
            let outcomes = messages[start..<end].map { ($0, validator.validate(key: $0.key, value: $0.value)) }
            let now = now()
            let invalid: [(ConsumerMessage, String?, String)] = state.withLock { state in
                var invalid: [(ConsumerMessage, String?, String)] = []
                for (message, outcome) in outcomes {
                    if skippingLoaded, !Self.claim(message, in: &state) { continue }
                    switch outcome {
                    case .upsert(let account):
                        state.core.upsert(
                            ScheduledAccount(
                                accountId: account.accountId, partition: message.partition,
                                integration: account.integration, schedule: account.schedule,
                                enabled: account.enabled, paused: account.paused, version: account.version),
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
        let (owned, held) = state.withLock { ($0.core.count, $0.core.heldAccounts) }
        metrics.accountsOwned.record(owned)
        metrics.record(held)
    }

    #if canImport(Glibc)
        /// glibc's `malloc_trim(0)`, looked up at run time because the Glibc module does not export `malloc.h`.
        private static func releaseFreedMemory() {
            guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "malloc_trim") else { return }
            typealias MallocTrim = @convention(c) (Int) -> Int32
            _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
        }
    #endif

    // MARK: - Firing

    /// Publishes due jobs until cancelled, as steps: sleep until a tick is due, turn the due jobs into records,
    /// publish them as one batch without waiting for its delivery (at most ``SchedulerConfiguration/maxInFlightBatches``
    /// at once, so a slow broker slows firing down instead of piling batches up), and once cancelled wait for the
    /// batches in flight.
    private func fire(_ producer: KafkaProducer) async throws {
        var encoder = JobEncoder()
        try await withThrowingTaskGroup(of: Void.self) { publishes in
            var inFlight = 0
            while !Task.isCancelled {
                let now = now()
                let (due, earliest) = state.withLock { state in
                    (state.core.popDue(now: now, limit: configuration.maxJobsPerBatch), state.core.earliestDue())
                }
                guard !due.isEmpty else {
                    do { try await sleepUntilDue(earliest, now: now) } catch { break }
                    continue
                }
                let records = jobRecords(due, now: now, encoder: &encoder)
                if inFlight >= configuration.maxInFlightBatches {
                    try await publishes.next()
                    inFlight -= 1
                }
                inFlight += 1
                publishes.addTask { await self.publish(records, of: due, firedAt: now, producer: producer) }
            }
            while !publishes.isEmpty { _ = try? await publishes.next() }
        }
    }

    /// Sleeps until the earliest due tick, but at most ``SchedulerConfiguration/maxTimerSleep`` (and at least 1 ms),
    /// so an account added meanwhile whose tick comes sooner is fired on time.
    /// - Throws: `CancellationError` when the scheduler stops.
    private func sleepUntilDue(_ earliest: Date?, now: Date) async throws {
        var sleep = configuration.maxTimerSleep
        if let earliest {
            let untilDue = Duration.milliseconds(Int64(earliest.timeIntervalSince(now) * 1000))
            sleep = max(.milliseconds(1), min(sleep, untilDue))
        }
        try await Task.sleep(for: sleep)
    }

    /// The due jobs as records of the jobs topic, keyed by account id, so each account's jobs land in the partition
    /// the workers expect, in order. Records each job's schedule lag and the catch-up jobs among them; a job that
    /// cannot be encoded is logged and left out rather than holding back the others.
    private func jobRecords(_ due: [DueJob], now: Date, encoder: inout JobEncoder) -> [ProducerRecord] {
        let jobsTopic = configuration.topics.jobs
        var records: [ProducerRecord] = []
        records.reserveCapacity(due.count)
        for job in due {
            metrics.scheduleLag.recordNanoseconds(max(0, Int64(now.timeIntervalSince(job.dueAt) * 1_000_000_000)))
            do {
                records.append(
                    ProducerRecord(
                        topic: jobsTopic, key: Array(job.accountId.utf8),
                        value: try encoder.encodeTick(
                            accountId: job.accountId, integration: job.integration, scheduledAt: job.scheduledAt)))
            } catch {
                logger.error("job could not be encoded", metadata: ["account": "\(job.accountId)"])
            }
        }
        let catchUps = due.count(where: \.isCatchUp)
        if catchUps > 0 { metrics.catchUps.increment(by: catchUps) }
        return records
    }

    /// Hands one batch to the producer and counts how it went. A failed batch is counted and logged, not retried:
    /// librdkafka already retried (idempotently) until message.timeout.ms, and the account's next tick (or a
    /// catch-up after a restart) covers the interval, since workers read everything since their watermark.
    private func publish(_ records: [ProducerRecord], of due: [DueJob], firedAt now: Date, producer: KafkaProducer)
        async
    {
        do {
            _ = try await producer.send(records)
            metrics.jobsPublished.increment(by: records.count)
            configuration.onPublished?(due, now, self.now())
        } catch {
            metrics.publishErrors.increment(by: records.count)
            logger.error(
                "publishing jobs failed",
                metadata: ["jobs": "\(records.count)", "error": "\(error)"])
        }
    }
}

/// The scheduler's metrics, named for Prometheus.
struct SchedulerMetrics: Sendable {
    let factory: any MetricsFactory
    let accountsOwned: Gauge
    let jobsPublished: Counter
    let catchUps: Counter
    let publishErrors: Counter
    let invalidRecords: Counter
    /// Fire time minus due time (tick + spread offset).
    let scheduleLag: Metrics.Timer

    init(factory: any MetricsFactory) {
        self.factory = factory
        accountsOwned = Gauge(label: "activity_sync_scheduler_accounts_owned", factory: factory)
        jobsPublished = Counter(label: "activity_sync_scheduler_jobs_published_total", factory: factory)
        catchUps = Counter(label: "activity_sync_scheduler_catch_up_jobs_total", factory: factory)
        publishErrors = Counter(label: "activity_sync_scheduler_publish_errors_total", factory: factory)
        invalidRecords = Counter(label: "activity_sync_scheduler_invalid_account_records_total", factory: factory)
        scheduleLag = Metrics.Timer(label: "activity_sync_scheduler_schedule_lag_seconds", factory: factory)
    }

    /// Owned accounts that get no jobs: paused ones and those held for re-authentication, per integration.
    func record(_ held: [String: HeldAccounts]) {
        for (integration, counts) in held {
            Gauge(
                label: "activity_sync_scheduler_accounts_paused", dimensions: [("integration", integration)],
                factory: factory
            ).record(counts.paused)
            Gauge(
                label: "activity_sync_scheduler_accounts_needs_reauth", dimensions: [("integration", integration)],
                factory: factory
            ).record(counts.needsReauth)
        }
    }
}

extension KafkaConfiguration {
    /// The configuration for reading whole account partitions at load time.
    var forPartitionReads: KafkaConfiguration {
        var copy = self
        // Bound the prefetch queue (librdkafka's default is 64 MB per client) so loading a million accounts
        // does not hold a partition's worth of bytes twice.
        if copy.properties["queued.max.messages.kbytes"] == nil {
            copy.properties["queued.max.messages.kbytes"] = "4096"
        }
        return copy
    }
}
