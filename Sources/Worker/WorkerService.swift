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
    private let processor: JobProcessor
    /// This process's claim on the worker's `group.instance.id`: its consumers' client id carries the token.
    private let ownership: InstanceOwnership
    private let decoder: JobDecoder
    private let logger: Logger
    /// The one lock: the state machine and the channels to the tasks that act on its decisions.
    private let shared: Mutex<Shared>
    private let metrics: WorkerMetrics
    /// The owned partitions' accounts: each job's sealed config comes from here, never from the job.
    private let accounts: AccountDirectory
    /// The running jobs' syncs by job number, with their partition: a revocation cancels those still running at its
    /// deadline, a loss at once.
    private let runningJobs = Mutex<(next: UInt64, tasks: [UInt64: (partition: Int32, task: Task<JobResult, Never>)])>(
        (1, [:]))
    /// Stores token pairs that running syncs refreshed, before they use them (see ``saveCredentials(_:_:)``).
    private let credentialsProducer = Mutex<KafkaProducer?>(nil)

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

    private func stop(_ error: WorkerError) {
        logger.error("stopping", metadata: ["reason": "\(error)"])
        decide { $0.machine.stop(error) }
        beginShutdown()
    }

    // MARK: - Waiting

    /// Reports an event to the machine and acts on what it settled, in one lock: the parked tasks it wakes are
    /// resumed and a batch it flushed for them is handed to the committer, outside the lock. Every change of the
    /// machine goes through here, so no waiter misses the event it waits for.
    @discardableResult
    private func decide<T: Sendable>(_ event: (inout Shared) -> T) -> T {
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
    private func act(_ event: (inout WorkerStateMachine) -> WorkerStateMachine.Action) {
        handle(decide { event(&$0.machine) })
    }

    /// Parks the calling task in the machine until `condition` holds, and says why it was resumed. Cancelling the
    /// task resumes it `.cancelled` (see ``WorkerStateMachine/cancel(_:)`` for the one exception); the worker
    /// stopping resumes it `.stopped`.
    /// - Parameters:
    ///   - deadline: when the wait ends `.timedOut`.
    ///   - flushUntil: for settled output: when it stops flushing and may end `.released`.
    private func wait(
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

    // MARK: - Consuming

    /// The consumer fenced itself: see ``consumeReplacingSelfFenced(_:configuration:)``.
    private struct SelfFenced: Error {
        var error: KafkaError
        /// Whether the group's member list showed it (else the list could not be read).
        var shown: Bool
        var evidence: String
    }

    /// Runs the consumer loop, replacing a consumer that fenced itself.
    ///
    /// librdkafka 2.0.2's static member can fence itself after a broker restart or an outage: it rejoins under its
    /// `group.instance.id` with a new member id, and a request still carrying the old one is answered
    /// `FENCED_INSTANCE_ID`, which librdkafka makes fatal — sometimes well after the loss (15 s into a revocation on
    /// kfake). A second process with the id causes the same error. The group's member list tells them apart
    /// (``InstanceOwnership``): the consumer's client id carries a per-process token, and the coordinator lists the
    /// client id of whoever holds the instance id now. Held by this process, or by nobody: a new consumer joins under
    /// the same id and the worker goes on. Held by another process: the worker stops (exit code 3). When the list
    /// cannot be read (the coordinator still away), the worker also rejoins, but at most 5 times in 10 minutes: if
    /// another process does have the id, the rejoin fences it and it reads this process's token.
    private func consumeReplacingSelfFenced(
        _ first: KafkaConsumer, configuration consumerConfiguration: ConsumerConfiguration
    ) async throws {
        var consumer = first
        var replaced: [(at: ContinuousClock.Instant, shown: Bool)] = []
        while true {
            do {
                try await consume(consumer)
                return
            } catch let fenced as SelfFenced {
                let now = ContinuousClock.now
                replaced.removeAll { now - $0.at > .seconds(600) }
                // Shown self-fencing is bounded only against a loop; unshown, tightly.
                let limit = fenced.shown ? 30 : 5
                let count = replaced.filter { $0.shown == fenced.shown }.count
                guard count < limit, !Task.isCancelled, !shared.withLock({ $0.stopping }) else {
                    throw stopFenced(
                        fenced.error, holder: "the consumer fenced itself \(count + 1) times in 10 minutes")
                }
                replaced.append((now, fenced.shown))
                logger.warning(
                    "the consumer was fenced by its own rejoin (no other process holds its id); replacing it under its id",
                    metadata: ["error": "\(fenced.error)", "evidence": "\(fenced.evidence)"])
                let assigned = shared.withLock { $0.machine.assignedPartitions }
                if !assigned.isEmpty { await revoke(assigned, lost: true) }
                // Not awaited: closing a failed consumer may outlast its timeout (confluentinc/librdkafka#4674).
                let old = consumer
                Task { await old.close(timeout: .seconds(5)) }
                consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
                try consumer.subscribe(topics: [configuration.topics.jobs])
                let current = consumer
                shared.withLock { $0.consumer = current }
            }
        }
    }

    /// Records "another process has this id" at once — a write waiting to learn whether another process has the id
    /// reads it — and returns it to throw.
    private func stopFenced(_ error: KafkaError, holder: String) -> WorkerError {
        let reason = WorkerError.fenced(
            "another consumer joined the group with this worker's group.instance.id (\(holder)): \(error)")
        decide { $0.machine.stop(reason) }
        return reason
    }

    private func consume(_ consumer: KafkaConsumer) async throws {
        for await event in consumer.events {
            if Task.isCancelled || shared.withLock({ $0.stopping }) { break }
            switch event {
            case .assigned(let partitions, let metadata):
                try await assign(
                    partitions.filter { $0.topic == configuration.topics.jobs }.map(\.partition), metadata: metadata)
            case .revoked(let partitions):
                await revoke(partitions.map(\.partition), lost: false)
            case .lost(let partitions):
                await revoke(partitions.map(\.partition), lost: true)
            case .fatal(let error):
                // The consumer's own fatal FENCED_INSTANCE_ID: another process joined with this worker's id (static
                // membership). Unlike the abortable FENCED_INSTANCE_ID a transactional offset commit can get after a
                // broker restart, this one is final.
                if error.isFenced {
                    switch await holderOfThisId() {
                    case .anotherProcess(let member):
                        throw stopFenced(
                            error,
                            holder: "client \(member.clientId) from \(member.host) holds it as \(member.memberId)")
                    case .thisProcess:
                        throw SelfFenced(
                            error: error, shown: true, evidence: "the group lists no other process on the id")
                    case .unknown(let reason):
                        throw SelfFenced(error: error, shown: false, evidence: "the group's members unknown: \(reason)")
                    }
                }
                let reason = WorkerError.kafkaFatal("\(error)")
                decide { $0.machine.stop(reason) }
                throw reason
            case .messages(let messages):
                for message in messages { accept(message) }
                applyBackpressure(consumer)
                // Bound memory overall too: wait for jobs to finish before taking more.
                if await wait(for: .room(limit: configuration.maxBufferedJobs), deadline: nil) == .cancelled {
                    throw CancellationError()
                }
            }
        }
    }

    /// Asks the group coordinator who holds this worker's instance id; retried for a few seconds while the
    /// coordinator is still away (a broker restart is the usual reason the consumer fenced itself).
    private func holderOfThisId() async -> InstanceOwnership.Verdict {
        let admin: KafkaAdmin
        do {
            admin = try KafkaAdmin(configuration: configuration.kafka, logger: logger)
        } catch {
            return .unknown("\(error)")
        }
        defer { Task { await admin.close(timeout: .seconds(5)) } }
        var verdict = InstanceOwnership.Verdict.unknown("not asked")
        for attempt in 0..<5 {
            if attempt > 0 { try? await Task.sleep(for: .seconds(2)) }
            let members: Result<[GroupMember], KafkaError>
            do {
                members = .success(try await admin.groupMembers(configuration.groupId, timeout: .seconds(3)))
            } catch {
                members = .failure(error)
            }
            verdict = ownership.judge(members)
            if case .unknown = verdict { continue }
            return verdict
        }
        return verdict
    }

    /// Pauses the partitions that hold too much until their next commit, and resumes those that committed it.
    private func applyBackpressure(_ consumer: KafkaConsumer) {
        let (pause, resume) = decide {
            $0.machine.backpressure(
                maxJobs: configuration.maxUncommittedJobsPerPartition,
                maxBytes: configuration.maxUncommittedBytesPerPartition)
        }
        let topic = configuration.topics.jobs
        do {
            if !pause.isEmpty {
                try consumer.pause(pause.map { TopicPartition(topic: topic, partition: $0) })
                metrics.pausedPartitions.increment(by: pause.count)
                logger.info(
                    "partitions paused: too much waits for an earlier job to commit",
                    metadata: ["partitions": "\(pause)"])
            }
            if !resume.isEmpty {
                try consumer.resume(resume.map { TopicPartition(topic: topic, partition: $0) })
                logger.info("partitions resumed", metadata: ["partitions": "\(resume)"])
            }
        } catch {
            // A partition revoked meanwhile cannot be paused; the next assignment starts unpaused anyway.
            logger.warning("pausing or resuming partitions failed", metadata: ["error": "\(error)"])
        }
    }

    /// Restores the partitions' states before asking for the next event, so no job of them runs on a state older
    /// than the committed offsets: each state partition is read to its high watermark (see `readPartitionToEnd`),
    /// which includes every transaction whose offsets the group has committed.
    private func assign(_ partitions: [Int32], metadata: ConsumerGroupMetadata?) async throws {
        guard !partitions.isEmpty else { return }
        let started = ContinuousClock.now
        // The metadata of this generation, taken by the consumer when the assignment was made: batches of this
        // assignment commit with it and no other.
        guard let metadata else {
            throw WorkerError.kafka("the consumer gave no group metadata with its assignment (is group.id set?)")
        }
        let generation = decide { $0.machine.assigned(partitions, groupMetadata: metadata) }
        configuration.onReadinessChange?(false)
        let restored = try await restore(partitions)
        // Decoded outside the lock: jobs of owned partitions go on meanwhile.
        var records = 0
        var undecodable = 0
        var accountCount = 0
        var decoded: [(Int32, [String: StateRecord], AccountDirectory.Table)] = []
        for (partition, messages, table) in restored {
            let (states, bad) = StateStore.decode(messages.map { ($0.key, $0.value) })
            records += messages.count
            undecodable += bad
            accountCount += table.entries.count
            decoded.append((partition, states, table))
        }
        let owned = decide { shared -> Int in
            for (partition, states, table) in decoded {
                // The accounts first: the machine releases the partition's queued jobs once its state is restored.
                accounts.install(table, partition: partition)
                shared.machine.restored(partition: partition, generation: generation, states: states)
            }
            return shared.machine.assignedCount
        }
        if !shared.withLock({ $0.stopping }) { configuration.onReadinessChange?(true) }
        metrics.assignedPartitions.record(owned)
        logger.info(
            "partitions assigned and state restored",
            metadata: [
                "partitions": "\(partitions.sorted())", "stateRecords": "\(records)", "accounts": "\(accountCount)",
                "generation": "\(generation)",
                "undecodable": "\(undecodable)", "ms": "\((ContinuousClock.now - started).wholeMilliseconds)",
            ])
    }

    /// Reads the state and accounts partitions, `restoreConcurrency` at a time; a failed read is retried with
    /// capped backoff for up to `restoreRetryLimit` (a slow state topic or an open transaction that has not timed
    /// out yet must not turn into a crash loop of every worker).
    private func restore(_ partitions: [Int32]) async throws -> [(Int32, [ConsumerMessage], AccountDirectory.Table)] {
        let limit = ContinuousClock.now + configuration.restoreRetryLimit
        return try await readEachPartition(partitions, concurrency: configuration.restoreConcurrency) {
            try await self.restorePartition($0, until: limit)
        }.map { ($0.partition, $0.result.0, $0.result.1) }
    }

    private func restorePartition(_ partition: Int32, until limit: ContinuousClock.Instant) async throws
        -> ([ConsumerMessage], AccountDirectory.Table)
    {
        var attempt = 0
        while true {
            attempt += 1
            // Every attempt ends by `limit`: the whole restore stays within `restoreRetryLimit`, below the
            // consumer's max.poll.interval.ms, whose expiry would cost this member its partitions.
            let remaining = limit - ContinuousClock.now
            let timeout = min(configuration.restoreTimeout, remaining)
            guard remaining > .milliseconds(500) else {
                throw WorkerError.restoreFailed(
                    "state partition \(partition): \(configuration.restoreRetryLimit) spent in \(attempt - 1) attempts")
            }
            do {
                // The newest record per account only, as the reader goes: memory follows the number of accounts,
                // not the length of a state log that compaction has not caught up with.
                let states = try await readNewestPerKey(
                    configuration: configuration.kafka, topic: configuration.topics.state, partition: partition,
                    isolationLevel: .readCommitted, timeout: timeout,
                    maxBufferedBytes: configuration.restoreBufferBytes, logger: logger
                ).messages
                let accounts = try await self.accounts.load(
                    partition: partition, timeout: min(configuration.restoreTimeout, limit - ContinuousClock.now),
                    maxBufferedBytes: configuration.restoreBufferBytes)
                return (states, accounts)
            } catch {
                let backoff = Self.restoreBackoff.delay(afterFailures: attempt)
                guard ContinuousClock.now + backoff < limit, !shared.withLock({ $0.stopping }) else {
                    throw WorkerError.restoreFailed("state partition \(partition) after \(attempt) attempts: \(error)")
                }
                metrics.restoreRetries.increment()
                logger.warning(
                    "restoring a state partition failed; retrying",
                    metadata: ["partition": "\(partition)", "attempt": "\(attempt)", "error": "\(error)"])
                try await Task.sleep(for: backoff)
            }
        }
    }

    /// Cancels the syncs of these partitions that are still running; returns how many.
    private func cancelJobs(in partitions: [Int32]) -> Int {
        let set = Set(partitions)
        let tasks = runningJobs.withLock { $0.tasks.values.filter { set.contains($0.partition) }.map(\.task) }
        for task in tasks { task.cancel() }
        return tasks.count
    }

    /// Hands partitions over only once their output is settled: running jobs get `revocationDeadline` to finish,
    /// then are cancelled (a sync ends early with its progress, and a pair it refreshed was stored before use), what
    /// finished is committed, and a batch being written is always waited for (it commits or aborts within the
    /// writer's bound) — never released while a transaction that holds them may still change their state or
    /// offsets. Lost partitions' jobs are cancelled at once: their output cannot count.
    private func revoke(_ partitions: [Int32], lost: Bool) async {
        guard !partitions.isEmpty else { return }
        // Batches aborted meanwhile (any batch: the batcher counts them together) had their output discarded; the
        // log says so rather than "committed all".
        let (dropped, abortsBefore) = decide {
            ($0.machine.beginRevocation(partitions, lost: lost), $0.machine.counts.aborts)
        }
        logger.info(
            lost ? "partitions lost: dropping them" : "revoking partitions: settling their output first",
            metadata: ["partitions": "\(partitions.sorted())", "droppedQueuedJobs": "\(dropped)"])
        if lost { _ = cancelJobs(in: partitions) }
        let settled = lost ? true : await settle(partitions)
        let (owned, aborted) = decide { shared in
            shared.machine.finishRevocation(partitions)
            return (shared.machine.assignedCount, shared.machine.counts.aborts - abortsBefore)
        }
        accounts.drop(partitions)
        metrics.assignedPartitions.record(owned)
        logger.info(
            lost ? "partitions lost" : "partitions revoked",
            metadata: [
                "partitions": "\(partitions.sorted())", "settled": "\(settled)", "abortedBatches": "\(aborted)",
                "committedAll": "\(settled && !lost && aborted == 0)",
            ])
    }

    /// A revocation's wait, parked in the machine: running jobs get `revocationDeadline` to finish (cancelled by
    /// shutdown: the drain takes over, so stop waiting), then are cancelled and get a few seconds to end; what they
    /// finished is committed until the deadline, and a batch being written that holds the partitions is waited for
    /// past it — but not past the consumer's own handshake bound, after which the partitions are gone anyway.
    /// - Returns: whether all their output was settled.
    private func settle(_ partitions: [Int32]) async -> Bool {
        let revoking = Set(partitions)
        let deadline = ContinuousClock.now + configuration.revocationDeadline
        _ = await wait(for: .jobsEnded(revoking), deadline: deadline)
        if shared.withLock({ $0.machine.isRunning(partitions) }) {
            let cancelled = cancelJobs(in: partitions)
            logger.info(
                "jobs still running at the revocation deadline were cancelled; what they saved is committed",
                metadata: ["partitions": "\(partitions.sorted())", "jobs": "\(cancelled)"])
            _ = await wait(for: .jobsEnded(revoking), deadline: .now + .seconds(5))
        }
        act { $0.flush() }
        let handshakeEnd =
            ContinuousClock.now + configuration.revocationHandshakeTimeout - configuration.revocationDeadline
            - .seconds(5)
        switch await wait(for: .outputSettled(revoking), deadline: max(handshakeEnd, deadline), flushUntil: deadline) {
        case .met, .stopped:
            return true
        case .released, .cancelled:
            return false
        case .timedOut:
            logger.error(
                "a write holding revoked partitions did not settle in time; releasing them",
                metadata: ["partitions": "\(partitions.sorted())"])
            return false
        }
    }

    /// Reads the jobs and state topics' partition counts: they must be co-partitioned, and the count places jobs.
    private func checkTopics() async throws -> JobPlacement {
        let topics: [String: Int]
        do {
            topics = try await KafkaAdmin.listTopics(
                configuration: configuration.kafka, timeout: .seconds(30), logger: logger)
        } catch {
            throw WorkerError.kafka("listing the topics: \(error)")
        }
        return try JobPlacement.check(topics: topics, names: configuration.topics)
    }

    private func accept(_ message: ConsumerMessage) {
        let partition = message.partition
        guard message.topic == configuration.topics.jobs,
            let placement = decide({ shared -> JobPlacement?? in
                shared.machine.consumed(partition: partition, offset: message.offset) ? .some(shared.placement) : nil
            })
        else { return }
        let origin = JobOrigin(
            topic: message.topic, partition: partition, offset: message.offset, key: message.key,
            value: message.value, timestamp: message.timestamp)
        let decoded = decoder.decode(key: message.key, value: message.value)
        let misplaced = (try? decoded.get()).flatMap { placement?.poison(for: $0, in: partition) }
        switch (decoded, misplaced) {
        case (.success(let job), nil):
            act { $0.accept(job, origin: origin) }
        case (.failure(let poison), _), (.success, let poison?):
            logger.warning(
                "poison job sent to the dead-letter topic",
                metadata: [
                    "code": "\(poison.kind.rawValue)", "partition": "\(partition)", "offset": "\(message.offset)",
                ])
            metrics.job(outcome: .deadLettered)
            let result = processor.deadLetter(poison, origin: origin)
            let job = try? decoded.get()
            act { $0.poison(origin: origin, result: result, job: job) }
        }
    }

    // MARK: - Running jobs

    private func runJob(_ queued: QueuedJob) async {
        let state = shared.withLock { $0.machine.state(for: queued) }
        let started = ContinuousClock.now
        let startedAt = Date()
        // Its own task, so a revocation can cancel it (shutdown cancels it through this one).
        let sync = Task { () -> JobResult in
            let account = await self.accounts.lookup(
                queued.job.accountId, partition: queued.origin.partition, producedAt: queued.origin.timestamp)
            return await self.processor.process(
                queued.job, origin: queued.origin, account: account, state: state,
                saveCredentials: { credentials in try await self.saveCredentials(queued, credentials) })
        }
        let number = runningJobs.withLock { running in
            defer { running.next += 1 }
            running.tasks[running.next] = (queued.origin.partition, sync)
            return running.next
        }
        let processed = await withTaskCancellationHandler {
            await sync.value
        } onCancel: {
            sync.cancel()
        }
        _ = runningJobs.withLock { $0.tasks.removeValue(forKey: number) }
        metrics.jobDuration.recordNanoseconds((ContinuousClock.now - started).wholeNanoseconds)
        metrics.job(outcome: processed.outcome)
        if processed.outcome == .needsReauth {
            logger.warning("account needs re-authentication", metadata: ["account": "\(queued.job.accountId)"])
        }
        let statusRecord = processed.status.flatMap { processor.statusRecord($0) }
        let (next, commit, coalesced) = decide { shared in
            let before = shared.machine.coalescedCount
            let (next, commit) = shared.machine.finished(
                queued, result: processed, statusRecord: statusRecord, startedAt: startedAt)
            return (next, commit, shared.machine.coalescedCount - before)
        }
        if coalesced > 0 {
            metrics.job(outcome: .coalesced, count: coalesced)
            logger.info(
                "older ticks of an account were coalesced into its newest",
                metadata: ["account": "\(queued.job.accountId)", "coalesced": "\(coalesced)"])
        }
        handle(commit)
        if !next.isEmpty { handle(.start(next)) }
    }

    /// Stores a token pair `queued`'s sync just refreshed, before the sync uses it: as the account's state record
    /// (its committed state, `lastJob` included, with the new pair), through an idempotent producer, delivery
    /// awaited.
    ///
    /// The refresh invalidated the old pair, so a pair known only to the running job would be lost with it —
    /// cancelled by a revocation or shutdown, or the process killed — and the account would need reconnecting. The
    /// record is written only while no state record of the account waits to be committed (an earlier job's, which
    /// would otherwise land after it and put the old pair back) and while the partition is still this worker's;
    /// the job's own state record, later, carries the pair too.
    /// - Throws: when the partition was lost, an earlier state of the account is not committed within 10 s, or the
    ///   record cannot be written; the sync then stops without using the pair.
    private func saveCredentials(_ queued: QueuedJob, _ credentials: CredentialState) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        var state: StateRecord?
        while true {
            let (owned, holding, current) = shared.withLock {
                ($0.machine.owns(queued), $0.machine.holdsState(of: queued), $0.machine.state(for: queued))
            }
            guard owned else {
                throw CredentialsNotStored("partition \(queued.origin.partition) is no longer this worker's")
            }
            if !holding {
                state = current
                break
            }
            switch await wait(for: .stateCommitted(queued), deadline: deadline) {
            case .met, .released: continue
            case .timedOut: throw CredentialsNotStored("an earlier state of the account is still not committed")
            case .cancelled: throw CancellationError()
            case .stopped: throw CredentialsNotStored("the worker is stopping")
            }
        }
        guard
            let (kept, record) = processor.credentialsRecord(
                credentials, job: queued.job, partition: queued.origin.partition, state: state)
        else {
            throw CredentialsNotStored("the account's state with the new pair does not fit in a record")
        }
        let producer = try credentialsProducer.withLock { producer -> KafkaProducer in
            if let producer { return producer }
            let created = try KafkaProducer(
                configuration: ProducerConfiguration(kafka: configuration.kafka), logger: logger)
            producer = created
            return created
        }
        _ = try await producer.send([record.producerRecord])
        decide { $0.machine.credentialsStored(queued, record: kept) }
        metrics.credentialsStored.increment()
        logger.info(
            "a refreshed token pair was stored before use", metadata: ["account": "\(queued.job.accountId)"])
    }

    /// Why a refreshed pair was not stored before use (the sync then stops without using it).
    private struct CredentialsNotStored: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Waits for running jobs (up to the shutdown deadline, then cancels them by ending the run) and commits, both
    /// parked in the machine.
    private func drain(reason: String) async {
        decide { $0.machine.beginDrain() }
        _ = await wait(for: .jobsEnded(nil), deadline: .now + configuration.shutdownDeadline)
        // Leaving, unlike a revocation, need not wait for a write in flight past its deadline: an open transaction is
        // aborted by the broker (or fenced by the restart), and at least once only repeats.
        act { $0.flush() }
        _ = await wait(for: .outputSettled(nil), deadline: .now + .seconds(10))
        logger.info("drained", metadata: ["reason": "\(reason)"])
    }

    // MARK: - Committing

    private func handle(_ action: WorkerStateMachine.Action) {
        switch action {
        case .none: break
        case .start(let jobs):
            guard let startJob = shared.withLock({ $0.startJob }) else { return }
            for job in jobs { startJob.yield(job) }
        case .commit(let batch): _ = shared.withLock { $0.commitRequests }?.yield(batch)
        case .stop(let error): stop(error)
        }
    }

    /// Asks the machine whether `batch` may be written, writes it, and reports how that went.
    private func perform(_ batch: TransactionBatcher.Batch, output: any OutputWriter) async {
        // A batch holding a partition revoked since it was built, or built in an earlier assignment, is not ours to
        // commit any more: writing its records without their offsets would make the next owner repeat them, and
        // its offsets under the new generation would move the new owner's position. Drop it; its jobs run again.
        let permit = decide { shared in
            shared.consumer.flatMap { consumer in shared.machine.groupMetadata(toWrite: batch).map { ($0, consumer) } }
        }
        guard let (metadata, consumer) = permit else {
            logger.info("batch abandoned: its partitions were revoked", metadata: ["jobs": "\(batch.jobCount)"])
            act { $0.abandon(batch) }
            return
        }
        let offsets = batch.offsets.map {
            TopicPartitionOffset(topic: configuration.topics.jobs, partition: $0.key, offset: $0.value)
        }
        let isCurrent: @Sendable () -> Bool = { [self] in self.shared.withLock { $0.machine.mayWrite(batch) } }
        if let failure = await output.write(
            batch, offsets: offsets, groupMetadata: metadata, consumer: consumer, isCurrent: isCurrent)
        {
            await failed(batch, failure)
        } else {
            committed(batch, consumer: consumer)
        }
    }

    private func committed(_ batch: TransactionBatcher.Batch, consumer: KafkaConsumer) {
        metrics.commits.increment()
        let now = Date()
        for scheduled in batch.scheduledAt {
            metrics.scheduledToCommitted.recordNanoseconds(Int64(max(0, now.timeIntervalSince(scheduled)) * 1e9))
        }
        configuration.onCommit?(
            CommitReport(
                jobCount: batch.jobCount, recordCount: batch.records.count + batch.stateRecords.count,
                committedAt: now, scheduledAt: batch.scheduledAt))
        act { $0.commitSucceeded(batch) }
        applyBackpressure(consumer)
    }

    private func failed(_ batch: TransactionBatcher.Batch, _ failure: TransactionBatcher.CommitFailure) async {
        metrics.aborts.increment()
        if shared.withLock({ $0.abandonCommits }) {
            logger.warning("commit failed during shutdown; left to the next owner", metadata: ["error": "\(failure)"])
            return
        }
        logger.warning("commit failed", metadata: ["error": "\(failure)", "attempt": "\(batch.attempt)"])
        if case .aborted(_, let rebalancing, let recordRejected) = failure {
            if recordRejected { metrics.rejectedBatches.increment() }
            if rebalancing {
                // The revocation that settles this is on its way: re-producing the batch in a tight loop meanwhile
                // would only fill the logs with aborted records.
                try? await Task.sleep(for: .milliseconds(100))
            } else if !recordRejected {
                try? await Task.sleep(for: Self.commitBackoff.delay(afterFailures: batch.attempt))
            }
        }
        let (action, deadLettered) = decide { shared in
            let before = shared.machine.deadLetteredOutputs
            let action = shared.machine.commitFailed(batch, failure: failure)
            return (action, shared.machine.deadLetteredOutputs - before)
        }
        if deadLettered > 0 {
            metrics.job(outcome: .deadLettered)
            logger.error(
                "the cluster refused a job's output; the job goes to the dead-letter topic instead",
                metadata: ["error": "\(failure)", "jobs": "\(deadLettered)"])
        }
        handle(action)
    }

    private func reportLag() async {
        while !Task.isCancelled, !shared.withLock({ $0.stopping }) {
            try? await Task.sleep(for: .seconds(5))
            guard let consumer = shared.withLock({ $0.consumer }) else { continue }
            for partition in shared.withLock({ $0.machine.assignedPartitions }) {
                guard
                    let (_, high) = try? await consumer.watermarks(
                        topic: configuration.topics.jobs, partition: partition, timeout: .seconds(2)),
                    let position = shared.withLock({ $0.machine.committedPosition(partition: partition) })
                else { continue }
                metrics.lag(partition: partition, Int(max(0, high - position)))
            }
        }
    }
}
