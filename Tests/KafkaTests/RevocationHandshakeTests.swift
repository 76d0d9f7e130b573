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

    @Test("finishing releases a poll thread waiting on a revocation and ends the application's iteration")
    func finishReleasesBothSides() async {
        let channel = ConsumerEventChannel()
        async let released = onPollThread {
            channel.pushAndAwaitAcknowledgement(
                .revoked([TopicPartition(topic: "jobs", partition: 0)]), timeout: .seconds(20))
        }
        guard case .revoked = await channel.next() else {
            Issue.record("expected the revocation")
            return
        }
        channel.finish()
        #expect(await released, "the poll thread is not left waiting for an application that is gone")
        #expect(await channel.next() == nil)
    }
}

/// The same hand-over as plain values: each step of the machine, in the order the two sides take them.
@Suite("Consumer event machine")
struct ConsumerEventMachineTests {
    let revoked = KafkaConsumerEvent.revoked([TopicPartition(topic: "jobs", partition: 0)])
    let lost = KafkaConsumerEvent.lost([TopicPartition(topic: "jobs", partition: 0)])

    @Test("a late acknowledgement of a timed-out revocation does not release the next one")
    func aStaleAcknowledgementDoesNotReleaseANewerRevocation() {
        var machine = ConsumerEventMachine(capacity: 4)
        // The first revocation is taken by the application, which is then slow: the poll thread's wait times out
        // (the machine is not told; the poll thread just stops asking) and it queues a second revocation.
        let step1 = machine.offer(revoked, isRevocation: true)
        #expect(step1 == .buffered(revocation: 1))
        guard case .deliver(.revoked) = machine.request(cancelled: false) else {
            Issue.record("expected the first revocation")
            return
        }
        #expect(!machine.isAcknowledged(1))
        let step2 = machine.offer(lost, isRevocation: true)
        #expect(step2 == .buffered(revocation: 2))
        // The application comes back: that request acknowledges the first revocation only.
        guard case .deliver(.lost) = machine.request(cancelled: false) else {
            Issue.record("expected the second revocation")
            return
        }
        #expect(machine.isAcknowledged(1))
        #expect(!machine.isAcknowledged(2), "the second revocation was released before it was handled")
        // Asking for the event after it acknowledges the second.
        guard case .park = machine.request(cancelled: false) else {
            Issue.record("nothing is buffered: the application parks")
            return
        }
        #expect(machine.isAcknowledged(2))
    }

    @Test("taking a revocation is not its acknowledgement; asking for the next event is")
    func takingIsNotAcknowledging() {
        var machine = ConsumerEventMachine(capacity: 4)
        guard case .park = machine.request(cancelled: false) else {
            Issue.record("expected to park")
            return
        }
        let step3 = machine.offer(revoked, isRevocation: true)
        #expect(step3 == .resumeApplication(revocation: 1))
        #expect(!machine.isAcknowledged(1))
        let step4 = machine.offer(.messages([]), isRevocation: false)
        #expect(step4 == .buffered(revocation: nil))
        guard case .deliver(.messages) = machine.request(cancelled: false) else {
            Issue.record("expected the messages")
            return
        }
        #expect(machine.isAcknowledged(1))
    }

    @Test("the poll thread waits while the application is capacity events behind, and not once one is taken")
    func backpressure() {
        var machine = ConsumerEventMachine(capacity: 2)
        let step5 = machine.offer(.messages([]), isRevocation: false)
        #expect(step5 == .buffered(revocation: nil))
        let step6 = machine.offer(.messages([]), isRevocation: false)
        #expect(step6 == .buffered(revocation: nil))
        let step7 = machine.offer(.messages([]), isRevocation: false)
        #expect(step7 == .waitForSpace)
        _ = machine.request(cancelled: false)
        let step8 = machine.offer(.messages([]), isRevocation: false)
        #expect(step8 == .buffered(revocation: nil))
    }

    @Test("after finish nothing is buffered, a parked application is ended, every revocation counts as settled")
    func finishEndsEverything() {
        var machine = ConsumerEventMachine(capacity: 1)
        _ = machine.request(cancelled: false)
        let step9 = machine.finish()
        #expect(step9, "the parked application is resumed")
        #expect(machine.isAcknowledged(7))
        let step10 = machine.offer(revoked, isRevocation: true)
        #expect(step10 == .dropped)
        guard case .end = machine.request(cancelled: false) else {
            Issue.record("a finished channel ends the iteration")
            return
        }
    }

    @Test("a cancelled request ends at once and leaves no parked application for an offer to resume")
    func cancellation() {
        var machine = ConsumerEventMachine(capacity: 4)
        guard case .end = machine.request(cancelled: true) else {
            Issue.record("a cancelled request ends")
            return
        }
        _ = machine.request(cancelled: false)
        let step11 = machine.cancelRequest()
        #expect(step11, "the parked request is resumed by the caller")
        let again = machine.cancelRequest()
        #expect(!again, "and only once")
        let step12 = machine.offer(.messages([]), isRevocation: false)
        #expect(step12 == .buffered(revocation: nil))
    }
}
