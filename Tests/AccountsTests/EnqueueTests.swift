import Accounts
import ActivitySyncTesting
import Foundation
import Kafka
import Logging
import SyncModel
import Testing

/// Publishing jobs from the accounts topic, as `activity-sync enqueue` and `accounts resync` do, on the embedded
/// cluster.
@Suite(.serialized) struct EnqueueTests {
    let logger = Logger(label: "AccountsTests", factory: { _ in SwiftLogNoOpLogHandler() })
    let prefix = "acct-\(UInt32.random(in: 0...UInt32.max))"
    var topics: TopicNames { TopicNames(prefix: prefix) }
    static let partitions: Int32 = 6

    func cluster() throws -> EmbeddedKafkaCluster {
        try EmbeddedTopics(partitions: Self.partitions, prefix: prefix, logger: logger).cluster
    }

    func account(_ id: String, schedule: String = "*/5 * * * *", enabled: Bool = true) -> AccountRecord {
        AccountRecord(
            accountId: id, integration: "github", settings: AccountSettings(frequency: schedule, enabled: enabled),
            sealedConfig: SealedConfig(keyId: "k1", ciphertext: Data(repeating: 7, count: 48).base64EncodedString()),
            updatedAt: Date(timeIntervalSince1970: 1_796_000_000))
    }

    /// The jobs on the jobs topic, decoded as a worker decodes them.
    func publishedJobs(_ cluster: EmbeddedKafkaCluster) async throws -> [SyncJob] {
        let decoder = JobDecoder(integrations: ["github"])
        return try await TopicReader(bootstrapServers: cluster.bootstrapServers)
            .readAll(topics.jobs, partitions: Self.partitions)
            .map { try decoder.decode(key: $0.key, value: $0.value).get() }
    }

    @Test(.timeLimit(.minutes(1)))
    func enqueueByIdPublishesTheSchedulersJobAndReportsUnknownIds() async throws {
        let cluster = try cluster()
        let client = AccountsTopicClient(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topics: topics, logger: logger)
        try await client.put((1...20).map { account("acct-\($0)") })
        let now = Date(timeIntervalSince1970: 1_796_098_000)  // 04:06:40, latest */5 tick 04:05:00
        let result = try await client.enqueue(.accounts(["acct-3", "acct-17", "nobody", "acct-3"]), now: now)
        #expect(result.jobs.map(\.jobId) == ["acct-3@2026-12-01T04:05:00Z", "acct-17@2026-12-01T04:05:00Z"])
        #expect(result.unknownAccountIds == ["nobody"])
        let published = try await publishedJobs(cluster)
        #expect(Set(published) == Set(result.jobs))
        await cluster.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func enqueueAllReadsTheTopicOnceAndSkipsDisabledAndRemovedAccounts() async throws {
        let cluster = try cluster()
        let client = AccountsTopicClient(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topics: topics, logger: logger)
        try await client.put((1...30).map { account("acct-\($0)") } + [account("off", enabled: false)])
        try await client.remove(accountId: "acct-30")
        let result = try await client.enqueue(.all)
        #expect(result.jobs.count == 29)
        #expect(!result.jobs.contains { $0.accountId == "off" || $0.accountId == "acct-30" })
        #expect(Set(try await publishedJobs(cluster).map(\.jobId)) == Set(result.jobs.map(\.jobId)))
        await cluster.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func anAccountWrittenWithAnotherPartitionerIsStillFound() async throws {
        let cluster = try cluster()
        let kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
        let producer = try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka), logger: logger)
        let record = account("elsewhere")
        let home = KeyPartitioner.murmur2(Array("elsewhere".utf8), partitionCount: Self.partitions)
        _ = try await producer.send(
            ProducerRecord(
                topic: topics.accounts, partition: (home + 1) % Self.partitions, key: Array("elsewhere".utf8),
                value: try record.messageBytes()))
        await producer.close()
        let client = AccountsTopicClient(kafka: kafka, topics: topics, logger: logger)
        #expect(try await client.read(accountIds: ["elsewhere"]).accounts["elsewhere"] == record)
        let job = try await client.resync(accountId: "elsewhere", since: Date(timeIntervalSince1970: 1_796_000_000))
        #expect(job.since != nil)
        #expect(try await publishedJobs(cluster).map(\.jobId) == [job.jobId])
        await cluster.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func murmur2IsWhereTheProducerPutsAKey() async throws {
        let cluster = try cluster()
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)),
            logger: logger)
        let keys = (0..<50).map { "account-\($0)" }
        let placed = try await producer.send(
            keys.map { ProducerRecord(topic: topics.accounts, key: Array($0.utf8), value: Array("x".utf8)) })
        await producer.close()
        #expect(
            placed.map(\.partition)
                == keys.map { KeyPartitioner.murmur2(Array($0.utf8), partitionCount: Self.partitions) })
        await cluster.close()
    }

    @Test func aMissingAccountsTopicSaysWhatToDo() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 1, logger: logger)
        let client = AccountsTopicClient(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topics: topics, logger: logger)
        await #expect(throws: AccountsError.self) { try await client.readAll() }
        await cluster.close()
    }

    /// Pausing needs no sealing key: the record is written again with `settings.paused`, its sealed config as it
    /// was; `enqueue --all` (like the scheduler) skips a paused account; resuming clears it.
    @Test(.timeLimit(.minutes(1)))
    func pauseAndResumeRewriteTheRecordWithoutTheKey() async throws {
        let cluster = try cluster()
        let client = AccountsTopicClient(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topics: topics, logger: logger)
        try await client.put(["a-1", "a-2", "a-3"].map { account($0) })
        let paused = try await client.pause(.accounts(["a-1", "nobody"]), note: "migrating")
        #expect(paused.changed == ["a-1"] && paused.unknown == ["nobody"])
        var records = try await client.readAll().accounts
        #expect(records["a-1"]?.settings.paused?.reason == .manual)
        #expect(records["a-1"]?.settings.paused?.note == "migrating")
        #expect(records["a-1"]?.sealedConfig == account("a-1").sealedConfig, "the sealed config is kept as it was")
        #expect(records["a-2"]?.settings.paused == nil)
        let enqueued = try await client.enqueue(.all)
        #expect(Set(enqueued.jobs.map(\.accountId)) == ["a-2", "a-3"], "a paused account gets no job")
        let again = try await client.pause(.integration("github"))
        #expect(again.changed == ["a-2", "a-3"], "already paused ones are left alone")
        let resumed = try await client.resume(.accounts(["a-1"]))
        #expect(resumed.changed == ["a-1"])
        records = try await client.readAll().accounts
        #expect(records["a-1"]?.settings.paused == nil && records["a-2"]?.settings.paused != nil)
        await cluster.close()
    }
}
