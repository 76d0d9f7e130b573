import Kafka
import Logging
import Metrics
import SyncModel
import Synchronization

/// How the worker consumes its jobs topic: the consumer loop, assignment with state restore, revocation that
/// settles output before handing partitions over, and accepting each message as a job or a poison one.
extension WorkerService {
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
    func consumeReplacingSelfFenced(
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
                    partitions.filter { $0.topic == configuration.topics.jobs }.map(\.partition), metadata: metadata,
                    consumer: consumer)
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
    func applyBackpressure(_ consumer: KafkaConsumer) {
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
    /// which includes every transaction whose offsets the group had committed when the read began — and
    /// ``restoreAtStableOffsets(_:consumer:)`` makes sure no later one moved them meanwhile.
    private func assign(_ partitions: [Int32], metadata: ConsumerGroupMetadata?, consumer: KafkaConsumer) async throws {
        guard !partitions.isEmpty else { return }
        let started = ContinuousClock.now
        // The metadata of this generation, taken by the consumer when the assignment was made: batches of this
        // assignment commit with it and no other.
        guard let metadata else {
            throw WorkerError.kafka("the consumer gave no group metadata with its assignment (is group.id set?)")
        }
        let generation = decide { $0.machine.assigned(partitions, groupMetadata: metadata) }
        configuration.onReadinessChange?(false)
        let restored: [(Int32, [ConsumerMessage], AccountDirectory.Table)]
        do {
            restored = try await restoreAtStableOffsets(partitions, consumer: consumer)
        } catch let error as KafkaError where error.isFatal {
            // The consumer failed for good meanwhile (fenced): its `.fatal` event is next, and the partitions go as
            // lost with it, their jobs never started.
            logger.warning(
                "the consumer failed while the partitions were restored; its failure is handled next",
                metadata: ["partitions": "\(partitions.sorted())"])
            return
        }
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

    /// Restores the partitions so that their states match the offsets the consumer starts from.
    ///
    /// The consumer fetches the group's committed offsets as the assignment arrives, and, reading `read_committed`,
    /// asks for stable ones (KIP-447): offsets that a transaction still open sent are waited out, and the consumer
    /// starts after them. If that transaction is the previous owner's last batch and its state records are appended
    /// after the restore has taken the state partition's end, the jobs after those offsets run on the state from
    /// before the batch and emit its output again. It happened on kfake after a broker restart (three repeats in one
    /// of six runs): the new owner was handed the partitions while the previous owner's last batch was still being
    /// committed. So the restore starts only once the same stable fetch answers (an open transaction holding these
    /// offsets has ended by then, its records below the ends the restore takes), and a partition whose committed
    /// offset moved by the time the restore ended is read again.
    private func restoreAtStableOffsets(
        _ partitions: [Int32], consumer: KafkaConsumer
    ) async throws -> [(Int32, [ConsumerMessage], AccountDirectory.Table)] {
        let limit = ContinuousClock.now + configuration.restoreRetryLimit
        var before = try await committedOffsets(partitions, consumer: consumer, until: limit)
        var restored: [Int32: (Int32, [ConsumerMessage], AccountDirectory.Table)] = [:]
        var reading = partitions
        while !reading.isEmpty {
            for entry in try await restore(reading, until: limit) { restored[entry.0] = entry }
            let after = try await committedOffsets(partitions, consumer: consumer, until: limit)
            reading = partitions.filter { after[$0] != before[$0] }
            if !reading.isEmpty {
                metrics.restoreRetries.increment()
                logger.warning(
                    "committed offsets moved while the state was read (the previous owner's last transaction); reading those partitions again",
                    metadata: [
                        "partitions": "\(reading.sorted())",
                        "offsets": "\(reading.sorted().map { "\($0): \(before[$0] ?? -1) → \(after[$0] ?? -1)" })",
                    ])
            }
            before = after
        }
        return partitions.compactMap { restored[$0] }
    }

    /// The group's committed offsets of these jobs partitions, stable ones (see `restoreAtStableOffsets`); retried
    /// with the restore's backoff until `limit` (an open transaction of the previous owner holds the answer back
    /// until it ends, at most its `transaction.timeout.ms`).
    private func committedOffsets(
        _ partitions: [Int32], consumer: KafkaConsumer, until limit: ContinuousClock.Instant
    ) async throws -> [Int32: Int64] {
        let list = partitions.map { TopicPartition(topic: configuration.topics.jobs, partition: $0) }
        // A consumer that failed for good answers nothing more: retrying would hold up its fatal event (a fenced
        // static member, say) for minutes behind this restore.
        return try await retrying(
            "reading the committed offsets", until: limit, warning: "reading the committed offsets failed; retrying",
            isFinal: { ($0 as? KafkaError)?.isFatal == true }
        ) { remaining in
            let offsets = try await consumer.committed(list, timeout: min(.seconds(10), remaining))
            return Dictionary(offsets.map { ($0.partition, $0.offset) }) { first, _ in first }
        }
    }

    /// Reads the state and accounts partitions, `restoreConcurrency` at a time; a failed read is retried with
    /// capped backoff until `limit` (a slow state topic or an open transaction that has not timed out yet must not
    /// turn into a crash loop of every worker).
    private func restore(
        _ partitions: [Int32], until limit: ContinuousClock.Instant
    ) async throws -> [(Int32, [ConsumerMessage], AccountDirectory.Table)] {
        return try await readEachPartition(partitions, concurrency: configuration.restoreConcurrency) {
            try await self.restorePartition($0, until: limit)
        }.map { ($0.partition, $0.result.0, $0.result.1) }
    }

    private func restorePartition(_ partition: Int32, until limit: ContinuousClock.Instant) async throws
        -> ([ConsumerMessage], AccountDirectory.Table)
    {
        // Every attempt ends by `limit`: the whole restore stays within `restoreRetryLimit`, below the consumer's
        // max.poll.interval.ms, whose expiry would cost this member its partitions.
        try await retrying(
            "state partition \(partition)", until: limit, warning: "restoring a state partition failed; retrying",
            metadata: ["partition": "\(partition)"]
        ) { remaining in
            // The newest record per account only, as the reader goes: memory follows the number of accounts, not
            // the length of a state log that compaction has not caught up with.
            let states = try await readNewestPerKey(
                configuration: configuration.kafka, topic: configuration.topics.state, partition: partition,
                isolationLevel: .readCommitted, timeout: min(configuration.restoreTimeout, remaining),
                maxBufferedBytes: configuration.restoreBufferBytes, logger: logger
            ).messages
            let accounts = try await self.accounts.load(
                partition: partition, timeout: min(configuration.restoreTimeout, limit - ContinuousClock.now),
                maxBufferedBytes: configuration.restoreBufferBytes)
            return (states, accounts)
        }
    }

    /// One step of a restore, tried again with `restoreBackoff` while `limit` allows (each attempt is given what
    /// remains of it): a slow topic, or an open transaction that has not timed out yet, must not turn into a crash
    /// loop of every worker. An error `isFinal` calls final is thrown at once.
    private func retrying<T: Sendable>(
        _ what: String, until limit: ContinuousClock.Instant, warning: Logger.Message,
        metadata: Logger.Metadata = [:], isFinal: (any Error) -> Bool = { _ in false },
        _ step: (_ remaining: Duration) async throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let remaining = limit - ContinuousClock.now
            guard remaining > .milliseconds(500) else {
                throw WorkerError.restoreFailed(
                    "\(what): \(configuration.restoreRetryLimit) spent in \(attempt - 1) attempts")
            }
            do {
                return try await step(remaining)
            } catch  where isFinal(error) {
                throw error
            } catch {
                let backoff = Self.restoreBackoff.delay(afterFailures: attempt)
                guard ContinuousClock.now + backoff < limit, !shared.withLock({ $0.stopping }) else {
                    throw WorkerError.restoreFailed("\(what) after \(attempt) attempts: \(error)")
                }
                metrics.restoreRetries.increment()
                logger.warning(
                    warning, metadata: metadata.merging(["attempt": "\(attempt)", "error": "\(error)"]) { $1 })
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
    func checkTopics() async throws -> JobPlacement {
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
}
