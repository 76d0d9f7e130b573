import Foundation

/// What a consumer hands to its application, in order.
public enum KafkaConsumerEvent: Sendable {
    /// Partitions now owned; comes before any message from them, so per-partition state can be restored first.
    /// `groupMetadata` is this member's group metadata taken when the assignment was made (its generation): a
    /// transactional producer commits this assignment's offsets with it, never with a later generation's.
    case assigned([TopicPartition], groupMetadata: ConsumerGroupMetadata?)
    /// Partitions about to be taken away. The rebalance waits (up to `revocationTimeout`) until the application
    /// asks for the next event, so it can finish and commit the work of these partitions first.
    case revoked([TopicPartition])
    /// Partitions already taken away (session lost): committing their offsets will fail; drop their state.
    case lost([TopicPartition])
    /// A batch of messages, in partition order.
    case messages([ConsumerMessage])
    /// The consumer failed for good (librdkafka's fatal error; e.g. `FENCED_INSTANCE_ID`: another member took this
    /// static member's `group.instance.id`). Nothing more will come: close the consumer and stop.
    case fatal(KafkaError)
}

/// The consumer's events as an `AsyncSequence`. Iterate it from one task; it ends when the consumer is closed
/// or the iterating task is cancelled.
public struct KafkaConsumerEvents: AsyncSequence, Sendable {
    public typealias Element = KafkaConsumerEvent
    public typealias Failure = Never

    let channel: ConsumerEventChannel

    public struct AsyncIterator: AsyncIteratorProtocol {
        let channel: ConsumerEventChannel

        public mutating func next() async -> KafkaConsumerEvent? {
            await channel.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(channel: channel)
    }
}

/// Hands events from the poll thread to the application's task, with backpressure and the revocation handshake.
// @unchecked Sendable: all mutable state is guarded by `condition`; the poll thread blocks on it (its own thread,
// never the cooperative pool) while async callers only take the lock briefly.
final class ConsumerEventChannel: @unchecked Sendable {
    private let condition = NSCondition()
    /// Events not yet taken, each revocation with its handshake number.
    private var buffer: [(event: KafkaConsumerEvent, revocation: UInt64?)] = []
    private var waiter: CheckedContinuation<KafkaConsumerEvent?, Never>?
    private var finished = false
    /// Revocations are numbered so that an acknowledgement answers the revocation it was given for: after a
    /// handshake that timed out, the application's late "next" must not release a newer revocation it has not
    /// even seen yet.
    private var lastRevocation: UInt64 = 0
    private var revocationHandedOut: UInt64?
    private var revocationAcknowledged: UInt64 = 0
    /// Events buffered ahead of the application before the poll thread waits.
    private let capacity: Int

    init(capacity: Int = 4) {
        self.capacity = capacity
    }

    // MARK: Poll thread side

    /// Adds an event, waiting (on the poll thread) while the application is `capacity` events behind.
    func push(_ event: KafkaConsumerEvent) {
        condition.lock()
        defer { condition.unlock() }
        waitForSpace()
        if finished { return }
        deliver(event, revocation: nil)
    }

    /// Adds a `.revoked`/`.lost` event and waits until the application has taken it and asked for the next
    /// event, at most `timeout`. Returns false if the wait timed out.
    @discardableResult
    func pushAndAwaitAcknowledgement(_ event: KafkaConsumerEvent, timeout: Duration) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.wholeMilliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        waitForSpace()
        if finished { return true }
        lastRevocation += 1
        let number = lastRevocation
        deliver(event, revocation: number)
        while revocationAcknowledged < number && !finished {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    private func waitForSpace() {
        while buffer.count >= capacity && !finished {
            condition.wait()
        }
    }

    private func deliver(_ event: KafkaConsumerEvent, revocation: UInt64?) {
        if let waiter {
            self.waiter = nil
            if let revocation { revocationHandedOut = revocation }
            waiter.resume(returning: event)
        } else {
            buffer.append((event, revocation))
        }
    }

    /// No more events: waiting iterators get `nil`, a waiting poll thread is released.
    func finish() {
        condition.lock()
        defer { condition.unlock() }
        finished = true
        buffer.removeAll()
        condition.broadcast()
        if let waiter {
            self.waiter = nil
            waiter.resume(returning: nil)
        }
    }

    // MARK: Application side

    func next() async -> KafkaConsumerEvent? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<KafkaConsumerEvent?, Never>) in
                condition.lock()
                defer { condition.unlock() }
                if let handedOut = revocationHandedOut {
                    // Asking for the next event means the application is done with the revoked partitions.
                    revocationHandedOut = nil
                    revocationAcknowledged = max(revocationAcknowledged, handedOut)
                    condition.broadcast()
                }
                if finished || Task.isCancelled {
                    continuation.resume(returning: nil)
                } else if !buffer.isEmpty {
                    let next = buffer.removeFirst()
                    if let revocation = next.revocation { revocationHandedOut = revocation }
                    condition.broadcast()
                    continuation.resume(returning: next.event)
                } else {
                    waiter = continuation
                }
            }
        } onCancel: {
            condition.lock()
            defer { condition.unlock() }
            if let waiter {
                self.waiter = nil
                waiter.resume(returning: nil)
            }
        }
    }
}
