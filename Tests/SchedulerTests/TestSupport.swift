import ActivitySyncTesting
import Foundation
import Kafka
import Logging
import Sealing
import Synchronization
import SyncModel
import Testing

/// An embedded cluster with the accounts and jobs topics.
struct TestCluster {
    let embedded: EmbeddedTopics

    /// - Parameter status: also create the status topic (schedulers follow it to hold back needs_reauth accounts).
    init(partitions: Int32 = 3, status: Bool = false) throws {
        var logger = Logger(label: "test.cluster")
        logger.logLevel = .error
        let topics = TopicNames(prefix: "t")
        embedded = try EmbeddedTopics(
            partitions: partitions, prefix: "t",
            only: [topics.accounts, topics.jobs] + (status ? [topics.status] : []), logger: logger)
    }

    var cluster: EmbeddedKafkaCluster { embedded.cluster }
    var topics: TopicNames { embedded.topics }
    var partitions: Int32 { embedded.partitions }
    var logger: Logger { embedded.logger }
    var kafka: KafkaConfiguration { embedded.kafka }

    func produce(_ records: [ProducerRecord]) async throws { try await embedded.produce(records) }

    func putAccount(_ record: AccountRecord) async throws {
        try await produce([
            ProducerRecord(topic: topics.accounts, key: Array(record.accountId.utf8), value: try record.messageBytes())
        ])
    }

    /// Every record of a topic, all partitions, raw.
    func rawRecords(_ topic: String) async throws -> [ConsumerMessage] {
        try await TopicReader(bootstrapServers: cluster.bootstrapServers, isolationLevel: .readUncommitted)
            .readAll(topic, partitions: partitions)
    }

    func jobs() async throws -> [SyncJob] {
        try await rawRecords(topics.jobs).compactMap { message in
            try message.value.map { try WireFormat.decode(SyncJob.self, from: $0) }
        }
    }

    func close() async { await cluster.close() }
}

func account(
    _ id: String, schedule: String = "*/2 * * * * *", integration: String = "github", sealer: Sealer,
    token: String
) throws -> AccountRecord {
    AccountRecord(
        accountId: id, integration: integration, settings: AccountSettings(username: id, frequency: schedule),
        sealedConfig: try sealer.seal(["access_token": .string(token)]), updatedAt: Date())
}
