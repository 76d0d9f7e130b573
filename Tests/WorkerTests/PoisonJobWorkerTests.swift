import Foundation
import Kafka
import SyncModel
import Testing
import Worker

/// The reproduction, end to end: a 900 KB job value used to make a ~1.2 MB dead letter, which librdkafka
/// refuses (`MSG_SIZE_TOO_LARGE`), so every transaction holding it failed and the worker stopped — and stopped
/// again on the same job after each restart.
@Suite(.serialized) struct PoisonJobWorkerTests {
    @Test(.timeLimit(.minutes(2)), arguments: [DeliveryMode.exactlyOnce, .atLeastOnce])
    func aJobTooLargeForItsDeadLetterDoesNotStopTheWorker(delivery: DeliveryMode) async throws {
        let harness = try WorkerHarness()
        let accounts = ["acct-1", "acct-2"]
        let poison = RecordSizeLimitTests.pattern(900_000)
        let good = try accounts.map {
            (key: Optional($0), value: Optional(try WireFormat.encode(try harness.job($0, tick: 1))))
        }
        // The poison first, so the good job of its account sits behind it.
        try await harness.publish([(key: "acct-1", value: poison)] + good)

        let worker = harness.worker(harness.configuration(delivery: delivery))
        let run = Task { try await worker.run() }
        let expected = harness.expectedIds(accounts: accounts, ticks: 1)
        let synced = try await harness.eventually { Set(try await harness.activityIds()).isSuperset(of: expected) }
        worker.beginShutdown()
        try await run.value  // throws if the worker stopped on its own

        #expect(synced, "the jobs behind the poison were synced")
        let letters = try await harness.read(harness.topics.deadLetters)
        #expect(letters.count == 1)
        let letter = try #require(letters.first)
        func header(_ name: String) -> String? { letter.header(name).map { String(decoding: $0, as: UTF8.self) } }
        #expect(header(DeadLetterHeader.code) == "not_json")
        #expect(header(DeadLetterHeader.truncated) == "true")
        #expect(header(DeadLetterHeader.originalSize) == "900000")
        #expect(
            header(DeadLetterHeader.originalSHA256)
                == "ed855898ab94ea51ab5ee302a2d7fe6d8aa87087ac8d36265bd365a22e84af37")
    }
}
