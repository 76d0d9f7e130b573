import Kafka
import Logging
import SyncModel

/// Where a single-partition benchmark's topics live: a broker the operator names (real retention, the only way to
/// measure real log sizes) or, by default, the embedded mock cluster, which keeps only ~5 MB of a partition.
struct BenchCluster {
    let bootstrapServers: String
    /// The embedded cluster when no broker was named; closed by ``close()``.
    private let embedded: EmbeddedKafkaCluster?

    /// Creates every topic of `topics` with one partition, on `bootstrap` or on a new embedded cluster.
    /// - Parameter what: what the embedded cluster is too small for, for the note printed when it is used.
    static func make(bootstrap: String?, topics: TopicNames, tooSmallFor what: String, logger: Logger) async throws
        -> BenchCluster
    {
        guard let bootstrap else {
            let embedded = try EmbeddedKafkaCluster(brokers: 1, logger: logger)
            try embedded.createTopics(topics.all.map(\.name), partitions: 1)
            print("note: the embedded cluster keeps ~5 MB of a partition; pass --bootstrap for \(what)")
            return BenchCluster(bootstrapServers: embedded.bootstrapServers, embedded: embedded)
        }
        let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: bootstrap), logger: logger)
        _ = try await admin.createTopics(
            topics.all.map { NewTopic(name: $0.name, partitions: 1, configs: $0.configs) }, timeout: .seconds(30))
        await admin.close()
        return BenchCluster(bootstrapServers: bootstrap, embedded: nil)
    }

    func close() async { await embedded?.close() }
}
