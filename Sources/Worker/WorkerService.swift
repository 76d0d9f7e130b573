import Foundation
import Kafka
public import Logging
import Metrics
public import ServiceLifecycle
public import SyncModel
import Synchronization

/// A sync worker: consumes jobs, runs each account's syncs one after another and different accounts
/// concurrently, and writes activities, state and offsets together (see ``DeliveryMode``).
///
/// Data flows one way: a job from the jobs topic → the account's integration → records → one commit. The
/// deciding parts (``OffsetTracker``, ``AccountQueues``, ``StateStore``, ``TransactionBatcher``,
/// ``JobProcessor``) are pure; this type only moves bytes between them and Kafka.
public final class WorkerService: Service, Sendable {
    public let configuration: WorkerConfiguration
    private let processor: JobProcessor
    private let decoder: JobDecoder
    private let batcher: TransactionBatcher
    private let logger: Logger
    private let shared: Mutex<Shared>
    private let metrics: WorkerMetrics

    /// A job waiting for its account's turn.
    struct QueuedJob: Sendable {
        var job: SyncJob
        var origin: JobOrigin
        var generation: Int
    }

    struct Shared: Sendable {
        var queues: AccountQueues<QueuedJob>
        var store = StateStore()
        /// Jobs running per partition, to drain a partition before handing it over.
        var running: [Int32: Int] = [:]
        /// Bumped on every assignment so a job from an earlier assignment of the same partition cannot
        /// report into the new one.
        var generations: [Int32: Int] = [:]
        var nextGeneration = 1
        var buffered = 0
        var stopping = false
        /// Set once shutdown has drained: a commit failing after that is given up, not retried, so a worker whose
        /// cluster is gone still exits (the next owner re-runs those jobs from the committed offsets).
        var abandonCommits = false
        var fatal: WorkerError?
        var startJob: AsyncStream<QueuedJob>.Continuation?
        var commitRequests: AsyncStream<TransactionBatcher.Batch>.Continuation?
        var consumeTask: Task<Void, any Error>?
    }

    /// - Parameters:
    ///   - integrations: the integrations this worker runs, by key (e.g. GitHub).
    ///   - sealer: opens the sealed configs that jobs carry and seals refreshed token pairs.
    public init(
        configuration: WorkerConfiguration, integrations: IntegrationRegistry, sealer: any ConfigSealer,
        logger: Logger
    ) {
        self.configuration = configuration
        var processor = JobProcessor(
            integrations: integrations, sealer: sealer, topics: configuration.topics, workerId: configuration.workerId)
        processor.syncTimeout = configuration.syncTimeout
        self.processor = processor
        self.decoder = JobDecoder(integrations: Set(integrations.keys))
        var batcherConfiguration = TransactionBatcher.Configuration()
        batcherConfiguration.commitInterval = configuration.commitInterval
        batcherConfiguration.maxJobs = configuration.maxJobsPerTransaction
        self.batcher = TransactionBatcher(configuration: batcherConfiguration)
        var logger = logger
        logger[metadataKey: "worker"] = "\(configuration.workerId)"
        self.logger = logger
        self.shared = Mutex(Shared(queues: AccountQueues(concurrency: max(1, configuration.concurrency))))
        self.metrics = WorkerMetrics()
    }

    /// Commits and aborts so far.
    public var transactionCounts: (commits: Int, aborts: Int) { batcher.counts }

    // MARK: - Run

    public func run() async throws {
        let output: any OutputWriter
        switch configuration.delivery {
        case .exactlyOnce:
            output = try await TransactionalWriter(configuration: configuration, logger: logger)
        case .atLeastOnce:
            output = try AtLeastOnceWriter(configuration: configuration, logger: logger)
        }
        var consumerConfiguration = ConsumerConfiguration(
            kafka: configuration.kafka, groupId: configuration.groupId, isolationLevel: .readCommitted,
            autoOffsetReset: .earliest, sessionTimeout: configuration.sessionTimeout, assignor: "range")
        consumerConfiguration.revocationTimeout = configuration.revocationDeadline + .seconds(10)
        let consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
        try consumer.subscribe(topics: [configuration.topics.jobs])
        configuration.onReadinessChange?(true)
        logger.info(
            "worker started",
            metadata: [
                "delivery": "\(configuration.delivery.rawValue)", "concurrency": "\(configuration.concurrency)",
                "group": "\(configuration.groupId)",
            ])

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
        let lagReporter = Task { await self.reportLag(consumer: consumer) }
        let committer = Task {
            for await batch in commitStream {
                await self.perform(batch, output: output, consumer: consumer)
            }
        }
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // The commit interval.
                group.addTask {
                    let period = max(self.configuration.commitInterval / 4, .milliseconds(5))
                    while !Task.isCancelled, !self.shared.withLock({ $0.stopping }) {
                        try? await Task.sleep(for: period)
                        self.handle(self.batcher.tick())
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
                // The consumer loop, cancelled on shutdown.
                let consumeTask = Task { try await self.consume(consumer) }
                self.shared.withLock { $0.consumeTask = consumeTask }
                if self.shared.withLock({ $0.stopping }) { consumeTask.cancel() }
                var consumeError: (any Error)?
                do {
                    try await withTaskCancellationHandler {
                        try await consumeTask.value
                    } onCancel: {
                        consumeTask.cancel()
                    }
                } catch is CancellationError {
                } catch {
                    consumeError = error
                }
                await self.drain(reason: consumeError == nil ? "shutdown" : "error")
                self.shared.withLock { $0.abandonCommits = true }
                startContinuation.finish()
                commitContinuation.finish()
                self.shared.withLock { $0.stopping = true }
                if let consumeError, self.shared.withLock({ $0.fatal }) == nil {
                    self.shared.withLock { $0.fatal = WorkerError.kafka("\(consumeError)") }
                }
                group.cancelAll()
                try await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        lagReporter.cancel()
        await Self.bounded("the last commit", limit: .seconds(15), logger: logger) { await committer.value }
        await Self.bounded("closing the producer", limit: .seconds(15), logger: logger) { await output.close() }
        await Self.bounded("leaving the consumer group", limit: .seconds(15), logger: logger) {
            await consumer.close(timeout: .seconds(10))
        }
        let fatal = shared.withLock { $0.fatal }
        let counts = batcher.counts
        if let fatal {
            logger.error("worker stopped", metadata: ["reason": "\(fatal)"])
            throw fatal
        }
        logger.info("worker stopped", metadata: ["commits": "\(counts.commits)", "aborts": "\(counts.aborts)"])
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
        let task = shared.withLock { shared -> Task<Void, any Error>? in
            shared.stopping = true
            return shared.consumeTask
        }
        task?.cancel()
    }

    private func stop(_ error: WorkerError) {
        logger.error("stopping", metadata: ["reason": "\(error)"])
        shared.withLock { if $0.fatal == nil { $0.fatal = error } }
        beginShutdown()
    }

    // MARK: - Consuming

    private func consume(_ consumer: KafkaConsumer) async throws {
        for await event in consumer.events {
            if Task.isCancelled || shared.withLock({ $0.stopping }) { break }
            switch event {
            case .assigned(let partitions):
                try await assign(partitions.filter { $0.topic == configuration.topics.jobs }.map(\.partition))
            case .revoked(let partitions):
                await revoke(partitions.map(\.partition), lost: false)
            case .lost(let partitions):
                await revoke(partitions.map(\.partition), lost: true)
            case .messages(let messages):
                for message in messages { accept(message) }
                // Bound memory: wait for jobs to finish and commit before taking more.
                while shared.withLock({ $0.buffered >= configuration.maxBufferedJobs && !$0.stopping }) {
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
        }
    }

    private func assign(_ partitions: [Int32]) async throws {
        guard !partitions.isEmpty else { return }
        let started = ContinuousClock.now
        let restoreKafka = configuration.kafka
        // Restore before asking for the next event: no message of these partitions arrives before that.
        let restored = try await withThrowingTaskGroup(of: (Int32, [ConsumerMessage]).self) { group in
            for partition in partitions {
                group.addTask {
                    do {
                        let records = try await readPartitionToEnd(
                            configuration: restoreKafka, topic: self.configuration.topics.state,
                            partition: partition, isolationLevel: .readCommitted,
                            timeout: self.configuration.restoreTimeout, logger: self.logger)
                        return (partition, records)
                    } catch {
                        throw WorkerError.restoreFailed("state partition \(partition): \(error)")
                    }
                }
            }
            var result: [(Int32, [ConsumerMessage])] = []
            for try await entry in group { result.append(entry) }
            return result
        }
        let (records, undecodable) = shared.withLock { shared -> (Int, Int) in
            var records = 0
            var undecodable = 0
            for (partition, messages) in restored {
                records += messages.count
                undecodable += shared.store.restore(
                    partition: partition, records: messages.map { ($0.key, $0.value) })
                shared.generations[partition] = shared.nextGeneration
                shared.nextGeneration += 1
            }
            return (records, undecodable)
        }
        batcher.assign(partitions)
        metrics.assignedPartitions.record(shared.withLock { $0.generations.count })
        logger.info(
            "partitions assigned and state restored",
            metadata: [
                "partitions": "\(partitions.sorted())", "stateRecords": "\(records)",
                "undecodable": "\(undecodable)", "ms": "\((ContinuousClock.now - started).milliseconds)",
            ])
    }

    private func revoke(_ partitions: [Int32], lost: Bool) async {
        guard !partitions.isEmpty else { return }
        let revoked = Set(partitions)
        // Jobs not started yet belong to the next owner, who re-consumes them from the committed offset.
        // A lost partition is already someone else's: nothing of it may be committed by us, so its running jobs
        // stop counting at once. A revoked one is still ours until we acknowledge: its running jobs stay current,
        // so they finish and their output is committed before the hand-over, and the next owner need not repeat
        // them (a repeated job could also lose a refreshed token pair that only its dropped output held).
        let dropped = shared.withLock { shared in
            if lost { for partition in partitions { shared.generations[partition] = nil } }
            let removed = shared.queues.removeWaiting { revoked.contains($0.origin.partition) }
            shared.buffered -= removed.count
            return removed.count
        }
        let deadline = ContinuousClock.now + configuration.revocationDeadline
        if !lost {
            // Finish what runs, then commit it. (Cancelled by shutdown: the drain takes over, so stop waiting.)
            while partitions.contains(where: { partition in shared.withLock { $0.running[partition, default: 0] > 0 } }),
                ContinuousClock.now < deadline, !Task.isCancelled
            {
                try? await Task.sleep(for: .milliseconds(5))
            }
            handle(batcher.flush())
            while batcher.hasCommittable(partitions: partitions), ContinuousClock.now < deadline,
                shared.withLock({ $0.fatal == nil }), !Task.isCancelled
            {
                handle(batcher.flush())
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        // From here on, output of these partitions' jobs (any still running past the deadline) is discarded, and
        // a batch in flight that holds them is abandoned rather than committed without its offsets.
        shared.withLock { shared in for partition in partitions { shared.generations[partition] = nil } }
        batcher.revoke(partitions)
        shared.withLock { shared in
            shared.store.drop(partitions)
            for partition in partitions { shared.running[partition] = nil }
        }
        metrics.assignedPartitions.record(shared.withLock { $0.generations.count })
        logger.info(
            lost ? "partitions lost" : "partitions revoked",
            metadata: ["partitions": "\(partitions.sorted())", "droppedQueuedJobs": "\(dropped)"])
    }

    private func accept(_ message: ConsumerMessage) {
        let partition = message.partition
        guard message.topic == configuration.topics.jobs, batcher.consumed(partition: partition, offset: message.offset)
        else { return }
        let origin = JobOrigin(
            topic: message.topic, partition: partition, offset: message.offset, key: message.key,
            value: message.value)
        switch decoder.decode(key: message.key, value: message.value) {
        case .failure(let poison):
            logger.warning(
                "poison job sent to the dead-letter topic",
                metadata: ["code": "\(poison.kind.rawValue)", "partition": "\(partition)", "offset": "\(message.offset)"])
            metrics.job(outcome: .deadLettered)
            handle(batcher.finished(partition: partition, offset: message.offset, result: processor.deadLetter(poison, origin: origin)))
        case .success(let job):
            let start: QueuedJob? = shared.withLock { shared in
                guard let generation = shared.generations[partition] else { return nil }
                shared.buffered += 1
                let queued = QueuedJob(job: job, origin: origin, generation: generation)
                guard let start = shared.queues.enqueue(queued, account: job.accountId) else { return nil }
                shared.running[partition, default: 0] += 1
                return start
            }
            if let start { shared.withLock { $0.startJob }?.yield(start) }
        }
    }

    // MARK: - Running jobs

    private func runJob(_ queued: QueuedJob) async {
        let partition = queued.origin.partition
        let state = shared.withLock { $0.store.state(partition: partition, accountId: queued.job.accountId) }
        let started = ContinuousClock.now
        let processed = await processor.process(queued.job, origin: queued.origin, state: state)
        metrics.jobDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
        metrics.job(outcome: processed.outcome)
        if processed.outcome == .needsReauth {
            logger.warning("account needs re-authentication", metadata: ["account": "\(queued.job.accountId)"])
        }
        let processor = self.processor
        let (next, current, statusChanged) = shared.withLock { shared -> ([QueuedJob], Bool, Bool) in
            let current = shared.generations[partition] == queued.generation
            var statusChanged = false
            if current {
                if let newState = processed.newState { shared.store.update(partition: partition, newState) }
                if let status = processed.status {
                    statusChanged = shared.store.statusChanged(accountId: status.accountId, to: status.status)
                }
                shared.running[partition, default: 1] -= 1
            }
            shared.buffered -= 1
            let started = shared.queues.finished(account: queued.job.accountId).map(\.item)
            for job in started { shared.running[job.origin.partition, default: 0] += 1 }
            return (started, current, statusChanged)
        }
        var result = processed
        if statusChanged, let status = result.status, let record = processor.statusRecord(status) {
            result.records.append(record)
        }
        if current {
            handle(batcher.finished(partition: partition, offset: queued.origin.offset, result: result))
        }
        if !next.isEmpty, let startJob = shared.withLock({ $0.startJob }) {
            for job in next { startJob.yield(job) }
        }
    }

    /// Waits for running jobs (up to the shutdown deadline, then cancels them by ending the run) and commits.
    private func drain(reason: String) async {
        let deadline = ContinuousClock.now + configuration.shutdownDeadline
        shared.withLock { shared in
            let removed = shared.queues.removeWaiting { _ in true }
            shared.buffered -= removed.count
        }
        while shared.withLock({ $0.running.values.contains { $0 > 0 } && $0.fatal == nil }),
            ContinuousClock.now < deadline
        {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let commitDeadline = ContinuousClock.now + .seconds(10)
        handle(batcher.flush())
        while shared.withLock({ $0.fatal == nil }), batcher.hasCommittable(partitions: batcher.assignedPartitions),
            ContinuousClock.now < commitDeadline
        {
            handle(batcher.flush())
            try? await Task.sleep(for: .milliseconds(5))
        }
        logger.info("drained", metadata: ["reason": "\(reason)"])
    }

    // MARK: - Committing

    private func handle(_ action: TransactionBatcher.Action) {
        switch action {
        case .none: break
        case .commit(let batch): _ = shared.withLock { $0.commitRequests }?.yield(batch)
        case .stop(let reason):
            stop(reason.contains("fenced") ? WorkerError.fenced(reason) : WorkerError.transactionFailed(reason))
        }
    }

    private func perform(_ batch: TransactionBatcher.Batch, output: any OutputWriter, consumer: KafkaConsumer) async {
        // A batch holding a partition revoked since it was built is not ours to commit any more: writing its
        // records without their offsets would make the next owner repeat them (and, with a partition given back
        // to us, move the new assignment's offsets past jobs being re-run). Drop it; its jobs run again.
        guard batcher.isValid(batchId: batch.id) else {
            logger.info("batch abandoned: its partitions were revoked", metadata: ["jobs": "\(batch.jobCount)"])
            handle(batcher.abandon(batchId: batch.id))
            return
        }
        let offsets = batch.offsets.map {
            TopicPartitionOffset(topic: configuration.topics.jobs, partition: $0.key, offset: $0.value)
        }
        do {
            try await output.write(batch, offsets: offsets, consumer: consumer)
            metrics.commits.increment()
            let now = Date()
            for scheduled in batch.scheduledAt {
                metrics.scheduledToCommitted.recordNanoseconds(Int64(max(0, now.timeIntervalSince(scheduled)) * 1e9))
            }
            configuration.onCommit?(
                CommitReport(
                    jobCount: batch.jobCount, recordCount: batch.records.count + batch.stateRecords.count,
                    committedAt: now, scheduledAt: batch.scheduledAt))
            handle(batcher.commitSucceeded(batchId: batch.id))
        } catch let error as KafkaError {
            metrics.aborts.increment()
            if shared.withLock({ $0.abandonCommits }) {
                logger.warning("commit failed during shutdown; left to the next owner", metadata: ["error": "\(error)"])
                return
            }
            let fatal = error.isFatal
            logger.warning(
                "commit failed", metadata: ["error": "\(error)", "fatal": "\(fatal)", "attempt": "\(batch.attempt)"])
            if !fatal {
                try? await Task.sleep(for: .milliseconds(min(2000, 50 << min(batch.attempt, 6))))
            }
            handle(
                batcher.commitFailed(
                    batchId: batch.id, fatal: fatal, groupRebalancing: error.isGroupRebalancing,
                    reason: fatal ? "fenced or fatal: \(error)" : "\(error)"))
        } catch {
            metrics.aborts.increment()
            logger.warning("commit failed", metadata: ["error": "\(error)"])
            if shared.withLock({ $0.abandonCommits }) { return }
            try? await Task.sleep(for: .milliseconds(100))
            handle(batcher.commitFailed(batchId: batch.id, fatal: false, reason: "\(error)"))
        }
    }

    private func reportLag(consumer: KafkaConsumer) async {
        while !Task.isCancelled, !shared.withLock({ $0.stopping }) {
            try? await Task.sleep(for: .seconds(5))
            for partition in batcher.assignedPartitions {
                guard
                    let (_, high) = try? await consumer.watermarks(
                        topic: configuration.topics.jobs, partition: partition, timeout: .seconds(2)),
                    let position = batcher.committedPosition(partition: partition)
                else { continue }
                metrics.lag(partition: partition, Int(max(0, high - position)))
            }
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let parts = components
        return parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000
    }

    var nanoseconds: Int64 {
        let parts = components
        return parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000
    }
}
