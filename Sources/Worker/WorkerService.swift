import Foundation
public import IntegrationCatalog
import Kafka
public import Logging
import Metrics
public import ServiceLifecycle
public import Sealing
import SyncModel
import Synchronization

/// A sync worker: consumes jobs, runs each account's syncs one after another and different accounts
/// concurrently, and writes activities, state and offsets together (see ``DeliveryMode``).
///
/// Data flows one way: a job from the jobs topic → the account's integration → records → one commit. The
/// deciding parts (``OffsetTracker``, ``AccountQueues``, ``StateStore``, ``TransactionBatcher``,
/// ``JobProcessor``) are pure; this type only moves bytes between them and Kafka.
public final class WorkerService: Service, Sendable {
    /// Waits between reads of a partition being restored: 500 ms doubling to 10 s.
    static let restoreBackoff = Backoff(initial: .milliseconds(500), maximum: .seconds(10))
    /// Waits before a failed batch is written again: 100 ms doubling to 5 s.
    static let commitBackoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
    public let configuration: WorkerConfiguration
    let processor: JobProcessor
    /// This process's claim on the worker's `group.instance.id`: its consumers' client id carries the token.
    let ownership: InstanceOwnership
    let decoder: JobDecoder
    let logger: Logger
    /// The one lock: the state machine and the channels to the tasks that act on its decisions.
    let shared: Mutex<Shared>
    let metrics: WorkerMetrics
    /// The owned partitions' accounts: each job's sealed config comes from here, never from the job.
    let accounts: AccountDirectory
    /// The running jobs' syncs by job number, with their partition: a revocation cancels those still running at its
    /// deadline, a loss at once.
    let runningJobs = Mutex<(next: UInt64, tasks: [UInt64: (partition: Int32, task: Task<JobResult, Never>)])>(
        (1, [:]))
    /// Stores token pairs that running syncs refreshed, before they use them (see ``saveCredentials(_:_:)``).
    let credentialsProducer = Mutex<KafkaProducer?>(nil)

    typealias QueuedJob = WorkerStateMachine.QueuedJob

    struct Shared: Sendable {
        var machine: WorkerStateMachine
        /// The tasks parked in the machine, by the id it knows them by (see ``wait(for:deadline:flushUntil:)``).
        var parked: [WorkerStateMachine.WaiterID: Parked] = [:]
        var nextWaiter: WorkerStateMachine.WaiterID = 1
        /// Set once shutdown has drained: a commit failing after that is given up, not retried, so a worker whose
        /// cluster is gone still exits (the next owner re-runs those jobs from the committed offsets).
        var abandonCommits = false
        var startJob: AsyncStream<QueuedJob>.Continuation?
        var commitRequests: AsyncStream<TransactionBatcher.Batch>.Continuation?
        var consumeTask: Task<Void, any Error>?
        /// Which jobs partition each account's jobs belong in; known once the topics were checked at start.
        var placement: JobPlacement?
        /// The consumer in use: replaced when it fenced itself (see ``consumeReplacingSelfFenced(_:configuration:)``).
        var consumer: KafkaConsumer?

        var stopping: Bool { machine.lifecycle != .running }
    }

    /// A task parked in the machine: resumed once, by the event that settles what it waits for; its deadline timers
    /// are cancelled then.
    struct Parked: Sendable {
        var continuation: CheckedContinuation<WorkerStateMachine.Wakeup, Never>
        var timers: [Task<Void, Never>]
    }

    /// - Parameters:
    ///   - integrations: the integrations this worker runs, by key (e.g. GitHub).
    ///   - sealer: opens the accounts' sealed configs and seals refreshed token pairs.
    public init(
        configuration: WorkerConfiguration, integrations: IntegrationRegistry, sealer: any ConfigSealer,
        logger: Logger
    ) {
        self.configuration = configuration
        self.ownership = InstanceOwnership(instanceId: configuration.transactionalId)
        let processor = Self.makeProcessor(
            configuration: configuration, integrations: integrations, sealer: sealer, logger: logger)
        self.processor = processor
        self.decoder = JobDecoder(integrations: Set(integrations.keys))
        let runs = RunRecorder(topic: configuration.topics.runs, workerId: configuration.workerId)
        let batcher = Self.makeBatcher(
            configuration: configuration, deadLetters: processor, runs: runs, decoder: self.decoder)
        var logger = logger
        logger[metadataKey: "worker"] = "\(configuration.workerId)"
        self.logger = logger
        self.shared = Mutex(
            Shared(
                machine: WorkerStateMachine(
                    concurrency: configuration.concurrency, integrationLimits: Self.integrationLimits(integrations),
                    batcher: batcher, runs: runs, coalesce: configuration.coalesceBacklog)))
        self.metrics = WorkerMetrics()
        // The accounts topic has no transactions to wait behind: a catch-up that takes longer than this is a broker
        // problem, and the jobs waiting for it fail (to run with their next tick) rather than hang.
        self.accounts = AccountDirectory(
            configuration: configuration.kafka, topic: configuration.topics.accounts,
            timeout: min(configuration.restoreTimeout, .seconds(30)), logger: logger)
    }

    /// The job processor with the configuration's limits (sync timeout, record size, failure backoff and auto-pause),
    /// logging with the worker's id so a shortened or dropped record can be traced to the worker that wrote it.
    private static func makeProcessor(
        configuration: WorkerConfiguration, integrations: IntegrationRegistry, sealer: any ConfigSealer,
        logger: Logger
    ) -> JobProcessor {
        var processor = JobProcessor(
            integrations: integrations, sealer: sealer, topics: configuration.topics, workerId: configuration.workerId)
        processor.syncTimeout = configuration.syncTimeout
        processor.maxRecordBytes = configuration.maxRecordBytes
        processor.failureBackoff = configuration.failureBackoff
        processor.maxFailureBackoff = configuration.maxFailureBackoff
        processor.autoPauseAfter = configuration.autoPauseAfter
        var processorLogger = logger
        processorLogger[metadataKey: "worker"] = "\(configuration.workerId)"
        processor.logger = processorLogger
        return processor
    }

    /// The transaction batcher, with what it does with output the broker refused: each refused job becomes a dead
    /// letter, and the run record that went with the refused output goes with it, so no job vanishes unaccounted.
    private static func makeBatcher(
        configuration: WorkerConfiguration, deadLetters: JobProcessor, runs: RunRecorder, decoder: JobDecoder
    ) -> TransactionBatcher {
        var batcherConfiguration = TransactionBatcher.Configuration()
        batcherConfiguration.commitInterval = configuration.commitInterval
        batcherConfiguration.maxJobs = configuration.maxJobsPerTransaction
        let jobsTopic = configuration.topics.jobs
        return TransactionBatcher(configuration: batcherConfiguration) { origin, partition, offset, reason in
            let origin =
                origin ?? JobOrigin(topic: jobsTopic, partition: partition, offset: offset, key: nil, value: nil)
            var result = deadLetters.deadLetter(Poison(.outputRejected, reason), origin: origin)
            // The run record that went with the refused output goes with it; the letter gets its own.
            let job = try? decoder.decode(key: origin.key, value: origin.value).get()
            let now = Date()
            if let run = runs.record(
                job: job, origin: origin, outcome: .deadLettered, reason: result.poison?.description, activities: 0,
                startedAt: now, finishedAt: now)
            {
                result.records.append(run)
            }
            return result
        }
    }

    /// An integration with a concurrency of its own (an SDK CLI's) gets at most that many of the worker's slots;
    /// its other jobs wait in the queue, so GitHub's jobs are never stuck behind them.
    private static func integrationLimits(_ integrations: IntegrationRegistry) -> [String: Int] {
        Dictionary(
            uniqueKeysWithValues: integrations.keys.compactMap { key in
                integrations[key]?.maxConcurrentSyncs.map { (key, $0) }
            })
    }

    /// Commits and aborts so far.
    public var transactionCounts: (commits: Int, aborts: Int) { shared.withLock { $0.machine.counts } }

    // MARK: - Run

    /// Runs the worker until shutdown or a fatal error, as a list of steps: check the topics, open the output and
    /// the consumer, serve jobs and commits until stopped, close every client.
    public func run() async throws {
        let placement = try await checkTopics()
        shared.withLock { $0.placement = placement }
        let output = try await makeOutput()
        let consumerConfiguration = makeConsumerConfiguration()
        let consumer = try startConsuming(consumerConfiguration)
        let (startStream, startContinuation) = AsyncStream.makeStream(of: QueuedJob.self)
        let (commitStream, commitContinuation) = AsyncStream.makeStream(of: TransactionBatcher.Batch.self)
        shared.withLock {
            $0.startJob = startContinuation
            $0.commitRequests = commitContinuation
        }

        // Commits, one at a time, in the order the batcher hands them out. Not a child task: a commit stuck in a
        // librdkafka call that has no timeout (an offset commit with the coordinator gone) must not keep a
        // stopping worker alive, so shutdown waits for it only for a bounded time.
        // Consumer lag, every few seconds; unstructured for the same reason (a watermark query to a gone cluster).
        let lagReporter = Task { await self.reportLag() }
        let committer = Task {
            for await batch in commitStream {
                await self.perform(batch, output: output)
            }
        }
        try await withGracefulShutdownHandler {
            try await self.serve(
                consumer, configuration: consumerConfiguration, jobs: startStream,
                closing: (startContinuation, commitContinuation))
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        lagReporter.cancel()
        await close(committer: committer, output: output, consumer: consumer)
        let (fatal, counts) = shared.withLock { ($0.machine.fatal, $0.machine.counts) }
        if let fatal {
            logger.error("worker stopped", metadata: ["reason": "\(fatal)"])
            throw fatal
        }
        logger.info("worker stopped", metadata: ["commits": "\(counts.commits)", "aborts": "\(counts.aborts)"])
    }

    /// The writer of the jobs' output, for the configured delivery. The transactional one asks, before each
    /// transaction, whether the worker already failed fatally, so nothing is written after the machine stopped it.
    private func makeOutput() async throws -> any OutputWriter {
        switch configuration.delivery {
        case .exactlyOnce:
            return try await TransactionalWriter(configuration: configuration, logger: logger) { [self] in
                self.shared.withLock { $0.machine.fatal != nil }
            }
        case .atLeastOnce:
            return try AtLeastOnceWriter(configuration: configuration, logger: logger)
        }
    }

    /// The jobs consumer, subscribed; the worker reports itself ready only once it is, so a readiness probe does not
    /// send traffic to a worker that cannot take jobs yet.
    private func startConsuming(_ consumerConfiguration: ConsumerConfiguration) throws -> KafkaConsumer {
        let consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
        try consumer.subscribe(topics: [configuration.topics.jobs])
        shared.withLock { $0.consumer = consumer }
        configuration.onReadinessChange?(true)
        logger.info(
            "worker started",
            metadata: [
                "delivery": "\(configuration.delivery.rawValue)", "concurrency": "\(configuration.concurrency)",
                "group": "\(configuration.groupId)",
                "groupInstanceId": "\(consumerConfiguration.groupInstanceId ?? "(dynamic)")",
            ])
        return consumer
    }

    /// Consumes and runs jobs until the consumer stops, then drains: the running jobs finish and their batch is
    /// handed to the committer before the channels close and the machine stops, so shutdown commits what ran. The
    /// commit-interval ticker and the jobs are children of this task, so stopping cancels them together.
    private func serve(
        _ consumer: KafkaConsumer, configuration consumerConfiguration: ConsumerConfiguration,
        jobs startStream: AsyncStream<QueuedJob>,
        closing channels: (AsyncStream<QueuedJob>.Continuation, AsyncStream<TransactionBatcher.Batch>.Continuation)
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The commit interval.
            group.addTask {
                let period = max(self.configuration.commitInterval / 4, .milliseconds(5))
                while !Task.isCancelled, !self.shared.withLock({ $0.stopping }) {
                    try? await Task.sleep(for: period)
                    self.act { $0.tick() }
                }
            }
            // Jobs run as children of this task so shutdown can cancel them together.
            group.addTask {
                await withDiscardingTaskGroup { jobs in
                    for await queued in startStream {
                        jobs.addTask { await self.runJob(queued) }
                    }
                }
            }
            let consumeError = await self.consumeUntilStopped(consumer, configuration: consumerConfiguration)
            await self.drain(reason: consumeError == nil ? "shutdown" : "error")
            channels.0.finish()
            channels.1.finish()
            self.decide { shared in
                shared.abandonCommits = true
                let error = consumeError.map { $0 as? WorkerError ?? WorkerError.kafka("\($0)") }
                shared.machine.stop(error)
            }
            group.cancelAll()
            try await group.waitForAll()
        }
    }

    /// The jobs consumer's configuration.
    private func makeConsumerConfiguration() -> ConsumerConfiguration {
        var consumerConfiguration = ConsumerConfiguration(
            kafka: configuration.kafka, groupId: configuration.groupId, isolationLevel: .readCommitted,
            autoOffsetReset: .earliest, sessionTimeout: configuration.sessionTimeout, assignor: "range")
        // The consumer's own bound on the revocation handshake must outlast ours: running jobs get
        // `revocationDeadline`, then a batch being written may take up to a commit and an abort to settle. Releasing
        // partitions before that would hand them over with a transaction still open.
        consumerConfiguration.revocationTimeout = configuration.revocationHandshakeTimeout
        if configuration.staticMembership {
            consumerConfiguration.groupInstanceId = configuration.transactionalId
            // Says which process holds the instance id when the consumer is fenced (see InstanceOwnership).
            consumerConfiguration.kafka.clientId = ownership.clientId
        }
        return consumerConfiguration
    }

    /// Runs the consumer loop until shutdown cancels it or it fails; returns its error, if it failed.
    private func consumeUntilStopped(
        _ consumer: KafkaConsumer, configuration consumerConfiguration: ConsumerConfiguration
    ) async -> (any Error)? {
        let consumeTask = Task {
            try await self.consumeReplacingSelfFenced(consumer, configuration: consumerConfiguration)
        }
        shared.withLock { $0.consumeTask = consumeTask }
        if shared.withLock({ $0.stopping }) { consumeTask.cancel() }
        do {
            try await withTaskCancellationHandler {
                try await consumeTask.value
            } onCancel: {
                consumeTask.cancel()
            }
        } catch is CancellationError {
        } catch {
            return error
        }
        return nil
    }

    /// Waits for the last commit and closes every client, each for a bounded time.
    private func close(committer: Task<Void, Never>, output: any OutputWriter, consumer: KafkaConsumer) async {
        await Self.bounded("the last commit", limit: .seconds(15), logger: logger) { await committer.value }
        await Self.bounded("closing the producer", limit: .seconds(15), logger: logger) { await output.close() }
        await Self.bounded("closing the accounts reader", limit: .seconds(15), logger: logger) {
            await self.accounts.close()
        }
        if let producer = credentialsProducer.withLock({ $0 }) {
            await Self.bounded("closing the credentials producer", limit: .seconds(15), logger: logger) {
                await producer.close()
            }
        }
        let lastConsumer = shared.withLock { $0.consumer } ?? consumer
        await Self.bounded("leaving the consumer group", limit: .seconds(15), logger: logger) {
            await lastConsumer.close(timeout: .seconds(10))
        }
    }

    /// Runs a client's close, waiting at most `limit`: with the cluster gone, librdkafka's close/destroy can outlast
    /// its own timeout (confluentinc/librdkafka#4674), and a worker that was told to stop must exit regardless.
    private static func bounded(
        _ what: String, limit: Duration, logger: Logger, _ operation: @escaping @Sendable () async -> Void
    ) async {
        let (done, signal) = AsyncStream.makeStream(of: Void.self)
        Task {
            await operation()
            signal.yield()
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            if !Task.isCancelled {
                logger.warning("\(what) did not finish in time; exiting without it")
                signal.yield()
            }
        }
        for await _ in done { break }
        timer.cancel()
    }

    /// Stops taking jobs; the run loop then drains and commits.
    public func beginShutdown() {
        configuration.onReadinessChange?(false)
        let task = decide { shared -> Task<Void, any Error>? in
            shared.machine.beginDrain()
            return shared.consumeTask
        }
        task?.cancel()
    }

    func stop(_ error: WorkerError) {
        logger.error("stopping", metadata: ["reason": "\(error)"])
        decide { $0.machine.stop(error) }
        beginShutdown()
    }

    // MARK: - Waiting

    /// Reports an event to the machine and acts on what it settled, in one lock: the parked tasks it wakes are
    /// resumed and a batch it flushed for them is handed to the committer, outside the lock. Every change of the
    /// machine goes through here, so no waiter misses the event it waits for.
    @discardableResult
    func decide<T: Sendable>(_ event: (inout Shared) -> T) -> T {
        let (value, action, resumed) = shared.withLock { shared in
            let value = event(&shared)
            let wakeups = shared.machine.wakeups()
            let resumed = wakeups.resume.compactMap { id, wakeup in
                shared.parked.removeValue(forKey: id).map { ($0, wakeup) }
            }
            return (value, wakeups.action, resumed)
        }
        for (parked, wakeup) in resumed {
            for timer in parked.timers { timer.cancel() }
            parked.continuation.resume(returning: wakeup)
        }
        handle(action)
        return value
    }

    /// ``decide(_:)`` for an event whose answer is an action, which is then performed.
    func act(_ event: (inout WorkerStateMachine) -> WorkerStateMachine.Action) {
        handle(decide { event(&$0.machine) })
    }

    /// Parks the calling task in the machine until `condition` holds, and says why it was resumed. Cancelling the
    /// task resumes it `.cancelled` (see ``WorkerStateMachine/cancel(_:)`` for the one exception); the worker
    /// stopping resumes it `.stopped`.
    /// - Parameters:
    ///   - deadline: when the wait ends `.timedOut`.
    ///   - flushUntil: for settled output: when it stops flushing and may end `.released`.
    func wait(
        for condition: WorkerStateMachine.Condition, deadline: ContinuousClock.Instant?,
        flushUntil: ContinuousClock.Instant? = nil
    ) async -> WorkerStateMachine.Wakeup {
        let id = shared.withLock { shared in
            defer { shared.nextWaiter += 1 }
            return shared.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                decide { shared in
                    let now = ContinuousClock.now
                    shared.machine.park(id, until: condition, flushing: flushUntil.map { now < $0 } ?? true)
                    var timers: [Task<Void, Never>] = []
                    if let deadline { timers.append(timer(at: deadline) { $0.expire(id) }) }
                    if let flushUntil, now < flushUntil { timers.append(timer(at: flushUntil) { $0.stopFlushing(id) }) }
                    shared.parked[id] = Parked(continuation: continuation, timers: timers)
                    // Cancelled before parking: the handler found nothing to cancel.
                    if Task.isCancelled { shared.machine.cancel(id) }
                }
            }
        } onCancel: {
            decide { $0.machine.cancel(id) }
        }
    }

    /// Reports a waiter's deadline to the machine when it comes (cancelled when the waiter is resumed first).
    private func timer(
        at instant: ContinuousClock.Instant, _ event: @escaping @Sendable (inout WorkerStateMachine) -> Void
    ) -> Task<Void, Never> {
        Task {
            try? await Task.sleep(until: instant, clock: .continuous)
            guard !Task.isCancelled else { return }
            self.decide { event(&$0.machine) }
        }
    }
}
