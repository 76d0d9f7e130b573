import Foundation
import Synchronization
import Testing

@testable import Kafka

/// The handshake between the poll thread (which holds a rebalance until the application is done with revoked
/// partitions) and the application (which says so by asking for the next event), without a cluster.
@Suite("Revocation handshake", .timeLimit(.minutes(1)))
struct RevocationHandshakeTests {
    let partitions = [TopicPartition(topic: "jobs", partition: 0)]

    /// Runs `body` on a thread of its own, as the poll thread does, and returns when it finished.
    func onPollThread(_ body: @escaping @Sendable () -> Bool) async -> Bool {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: body()) }
        }
    }

    @Test("a revocation is released only when the application asks for the event after it")
    func releasedByTheNextRequest() async {
        let channel = ConsumerEventChannel()
        let event = KafkaConsumerEvent.revoked(partitions)
        async let released = onPollThread { channel.pushAndAwaitAcknowledgement(event, timeout: .seconds(20)) }
        guard case .revoked = await channel.next() else {
            Issue.record("expected the revocation")
            return
        }
        // Taking the event is not the acknowledgement; asking for the next one is.
        channel.push(.messages([]))
        _ = await channel.next()
        #expect(await released)
    }

    @Test("a late acknowledgement of a timed-out revocation does not release the next one")
    func aStaleAcknowledgementDoesNotReleaseANewerRevocation() async throws {
        let channel = ConsumerEventChannel()
        let first = KafkaConsumerEvent.revoked(partitions)
        // The application takes the first revocation but is slow: the poll thread gives up waiting.
        async let firstReleased = onPollThread { channel.pushAndAwaitAcknowledgement(first, timeout: .milliseconds(200)) }
        guard case .revoked = await channel.next() else {
            Issue.record("expected the first revocation")
            return
        }
        #expect(await firstReleased == false, "timed out")
        // A second revocation is queued before the application comes back for more.
        let secondDone = Mutex(false)
        let partitions = partitions
        async let secondAcknowledged = onPollThread {
            let acknowledged = channel.pushAndAwaitAcknowledgement(.lost(partitions), timeout: .seconds(20))
            secondDone.withLock { $0 = true }
            return acknowledged
        }
        // The application finishes the first revocation only now (after the poll thread queued the second): it
        // asks for the next event and gets the second revocation. That request acknowledges the first one only.
        try await Task.sleep(for: .milliseconds(150))  // the scenario: the second revocation is queued first
        guard case .lost = await channel.next() else {
            Issue.record("expected the second revocation")
            return
        }
        try await Task.sleep(for: .milliseconds(300))  // give a wrongly released poll thread time to show it
        let releasedEarly = secondDone.withLock { $0 }
        #expect(!releasedEarly, "the second revocation was released before it was handled")
        channel.push(.messages([]))
        _ = await channel.next()
        #expect(await secondAcknowledged, "released once the application asked for the event after it")
        channel.finish()
    }
}
