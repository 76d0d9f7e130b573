public import Foundation
public import Sealing
public import SyncModel

/// A record the worker will write, independent of the Kafka binding so the deciding code stays I/O-free.
public struct OutgoingRecord: Sendable, Hashable {
    public struct Header: Sendable, Hashable {
        public var key: String
        public var value: [UInt8]

        public init(_ key: String, _ value: String) {
            self.key = key
            self.value = Array(value.utf8)
        }
    }

    public var topic: String
    /// Set for state records: they must land in the jobs partition's twin, whatever the partitioner does.
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [Header]

    public init(topic: String, partition: Int32? = nil, key: String?, value: [UInt8]?, headers: [(String, String)] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key.map { Array($0.utf8) }
        self.value = value
        self.headers = headers.map { Header($0.0, $0.1) }
    }
}

/// Where a job came from on the jobs topic.
public struct JobOrigin: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]?

    public init(topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
    }
}

/// What one job produced: the records to write and how it went.
public struct JobResult: Sendable {
    public enum Outcome: String, Sendable, CaseIterable {
        case synced
        /// Stopped early (deadline, rate limit); progress saved, the rest comes with a later job.
        case partial
        case duplicate
        case deadLettered = "dead_lettered"
        case needsReauth = "needs_reauth"
        /// The integration failed transiently on every attempt; nothing written, the next tick retries.
        case failed
    }

    public var outcome: Outcome
    /// Activities, dead letters and status records: written first.
    public var records: [OutgoingRecord] = []
    /// The new state record: written after the activities it accounts for.
    public var stateRecords: [OutgoingRecord] = []
    /// The new state, for the in-memory store.
    public var newState: StateRecord?
    /// The account status this job observed, written only when it changed.
    public var status: AccountStatus?
    public var activityCount = 0
    public var poison: Poison?
    /// The job's `scheduledAt`, for scheduled→committed latency; nil for poison.
    public var scheduledAt: Date?

    public init(outcome: Outcome) { self.outcome = outcome }
}

/// Runs one job against its integration and turns the outcome into records. No Kafka here.
public struct JobProcessor: Sendable {
    public var integrations: IntegrationRegistry
    public var sealer: any ConfigSealer
    public var topics: TopicNames
    public var workerId: String
    /// How long a sync may take before it must return with its progress.
    public var syncTimeout: Duration = .seconds(60)
    /// Attempts for an integration that throws a transient error.
    public var maxAttempts = 3
    public var retryDelay: Duration = .milliseconds(500)

    public init(integrations: IntegrationRegistry, sealer: any ConfigSealer, topics: TopicNames, workerId: String) {
        self.integrations = integrations
        self.sealer = sealer
        self.topics = topics
        self.workerId = workerId
    }

    /// The last 24 base64 characters of a sealed config: its 16-byte GCM tag, unique per sealing.
    static func configTag(_ sealed: SealedConfig) -> String { String(sealed.ciphertext.suffix(24)) }

    public func deadLetter(_ poison: Poison, origin: JobOrigin, now: Date = Date()) -> JobResult {
        var result = JobResult(outcome: .deadLettered)
        result.poison = poison
        let letter = DeadLetter(
            reason: poison.reason, code: poison.kind.rawValue, originalTopic: origin.topic,
            originalPartition: Int(origin.partition), originalOffset: origin.offset,
            originalKey: origin.key.map { String(decoding: $0, as: UTF8.self) }, originalValue: origin.value ?? [],
            failedAt: now, workerId: workerId)
        let value = (try? letter.messageBytes()) ?? []
        result.records = [
            OutgoingRecord(
                topic: topics.deadLetters, key: letter.originalKey, value: value, headers: letter.headers)
        ]
        return result
    }

    /// Runs `job` given the account's current state.
    public func process(_ job: SyncJob, origin: JobOrigin, state: StateRecord?, now: Date = Date()) async -> JobResult {
        var result = await run(job, origin: origin, state: state, now: now)
        if result.outcome != .deadLettered { result.scheduledAt = job.scheduledAt }
        return result
    }

    private func run(_ job: SyncJob, origin: JobOrigin, state: StateRecord?, now: Date) async -> JobResult {
        if DuplicateFire.isDuplicate(job, lastJob: state?.lastJob) {
            return JobResult(outcome: .duplicate)
        }
        guard let integration = integrations[job.integration] else {
            return deadLetter(Poison(.unknownIntegration, "integration \"\(job.integration)\" is not loaded"), origin: origin)
        }
        let tag = Self.configTag(job.sealedConfig)
        let credentials = state?.credentials.flatMap { $0.accountConfigTag == tag ? $0 : nil }
        if credentials?.rejected == true {
            // The token was rejected and the account was not reconnected since: asking again only burns requests.
            var result = JobResult(outcome: .needsReauth)
            result.status = AccountStatus(
                accountId: job.accountId, integration: job.integration, status: .needsReauth,
                reason: "the token was rejected; reconnect the account", at: now)
            return result
        }
        var config: JSONValue
        switch sealer.openConfig(job.sealedConfig) {
        case .failure(let poison): return deadLetter(poison, origin: origin, now: now)
        case .success(let opened): config = opened
        }
        if let refreshed = credentials?.refreshed, case .success(let opened) = sealer.openConfig(refreshed) {
            config = opened
        }
        let deadline = now.addingTimeInterval(syncTimeout.seconds)
        let request = SyncRequest(
            accountId: job.accountId, config: config, state: state?.data, since: job.since, deadline: deadline)

        var outcome: SyncOutcome?
        var lastError = ""
        for attempt in 1...max(1, maxAttempts) {
            do {
                outcome = try await integration.sync(request)
                break
            } catch let error as IntegrationError {
                switch error.kind {
                case .permanent:
                    return deadLetter(Poison(.permanentFailure, error.message), origin: origin, now: now)
                case .invalidConfig:
                    return deadLetter(Poison(.invalidConfig, error.message), origin: origin, now: now)
                case .transient:
                    lastError = error.message
                }
            } catch is CancellationError {
                lastError = "cancelled"
                break
            } catch {
                lastError = "\(type(of: error))"
            }
            if attempt < maxAttempts, Date().addingTimeInterval(retryDelay.seconds * Double(attempt)) < deadline {
                try? await Task.sleep(for: retryDelay * attempt)
                if Task.isCancelled { break }
            }
        }
        guard let outcome else {
            var result = JobResult(outcome: .failed)
            result.status = AccountStatus(
                accountId: job.accountId, integration: job.integration, status: .failing,
                reason: "sync failed: \(lastError.prefix(200))", at: now)
            return result
        }
        return records(for: outcome, job: job, origin: origin, state: state, tag: tag, credentials: credentials, now: now)
    }

    private func records(
        for outcome: SyncOutcome, job: SyncJob, origin: JobOrigin, state: StateRecord?, tag: String,
        credentials: CredentialState?, now: Date
    ) -> JobResult {
        var result: JobResult
        var newCredentials = credentials
        let status: AccountStatus.Status
        let reason: String?
        switch outcome.status {
        case .complete:
            result = JobResult(outcome: .synced)
            status = .ok
            reason = nil
        case .partial(let why, _):
            result = JobResult(outcome: .partial)
            status = .ok
            reason = why
        case .needsReauth(let why):
            result = JobResult(outcome: .needsReauth)
            status = .needsReauth
            reason = why
            newCredentials = CredentialState(accountConfigTag: tag, refreshed: credentials?.refreshed, rejected: true)
        }
        if let updated = outcome.updatedConfig, let sealed = try? sealer.seal(updated) {
            newCredentials = CredentialState(
                accountConfigTag: tag, refreshed: sealed, rejected: newCredentials?.rejected ?? false)
        }
        for activity in outcome.activities {
            guard let value = try? activity.messageBytes() else { continue }
            result.records.append(
                OutgoingRecord(
                    topic: topics.activities, key: job.accountId, value: value,
                    headers: CloudEvents.headers(for: activity, integration: job.integration)))
        }
        result.activityCount = outcome.activities.count
        let newState = StateRecord(
            accountId: job.accountId, integration: job.integration,
            lastJob: DuplicateFire.marker(after: job, previous: state?.lastJob), updatedAt: now, data: outcome.state,
            credentials: newCredentials)
        if let value = try? WireFormat.encode(newState) {
            result.stateRecords.append(
                OutgoingRecord(
                    topic: topics.state, partition: origin.partition, key: job.accountId, value: value,
                    headers: CloudEvents.headers(for: newState)))
        }
        result.newState = newState
        result.status = AccountStatus(
            accountId: job.accountId, integration: job.integration, status: status, reason: reason, at: now)
        return result
    }

    /// The status record to write for a changed status.
    public func statusRecord(_ status: AccountStatus) -> OutgoingRecord? {
        guard let value = try? status.messageBytes() else { return nil }
        return OutgoingRecord(topic: topics.status, key: status.accountId, value: value)
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
