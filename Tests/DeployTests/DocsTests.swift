import ActivitySyncTesting
import Foundation
import SyncModel
import Testing

/// The topic contract in docs/topics.md is what the ingestor team codes against: it must name every topic and
/// header that SyncModel defines, so a new topic or header cannot ship undocumented.
@Suite struct DocsTests {
    func read(_ path: String) throws -> String {
        try String(contentsOf: RepoPaths.root.appendingPathComponent(path), encoding: .utf8)
    }

    @Test("topics.md documents every topic, header and record type constant")
    func topicsDocumentCoversSyncModel() throws {
        let topics = try read("docs/topics.md")
        for spec in TopicNames.default.all {
            #expect(topics.contains("`\(spec.name)`"), "topics.md does not name \(spec.name)")
        }
        let headers =
            DeadLetter(
                reason: "r", code: "c", originalTopic: "t", originalPartition: 0, originalOffset: 0, originalKey: nil,
                originalValue: [], failedAt: Date(), workerId: "w"
            ).headers.map(\.0)
            + CloudEvents.headers(id: "i", source: "s", type: "t", time: Date()).map(\.0)
        for header in headers {
            #expect(topics.contains("`\(header)`"), "topics.md does not name header \(header)")
        }
        for constant in [CloudEvents.activityType, CloudEvents.stateType] {
            #expect(topics.contains(constant), "topics.md does not name \(constant)")
        }
        for schema in try FileManager.default.contentsOfDirectory(
            atPath: RepoPaths.root.appendingPathComponent("docs/schemas").path)
        where schema.hasSuffix(".schema.json") {
            #expect(topics.contains("schemas/\(schema)"), "topics.md does not link \(schema)")
        }
    }

    @Test("configuration.md documents the environment variables the deployment files use")
    func configurationDocumentsEnvironment() throws {
        let configuration = try read("docs/configuration.md")
        let deployment =
            try read("docker-compose.yml") + read("deploy/k8s/configmap.yaml")
            + read("deploy/k8s/worker.yaml") + read("deploy/k8s/scheduler.yaml") + read("Dockerfile")
        let variables = Set(
            deployment.matches(of: /ACTIVITY_SYNC_[A-Z_]+/).map { String($0.output) })
        #expect(!variables.isEmpty)
        for variable in variables.sorted() {
            #expect(configuration.contains("`\(variable)`"), "configuration.md does not document \(variable)")
        }
    }
}
