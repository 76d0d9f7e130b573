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

/// The rules of the hand-over between the poll thread and the application, without a lock, a thread or a clock:
/// each call is one step and returns what the caller (``ConsumerEventChannel``) must do. So the revocation
/// handshake and the backpressure are tested as plain values.
struct ConsumerEventMachine {
    /// Events not yet taken, each revocation with its handshake number.
    private var buffer: [(event: KafkaConsumerEvent, revocation: UInt64?)] = []
    /// The application is parked in `next()` waiting for an event.
    private var applicationWaiting = false
    private(set) var finished = false
    /// Revocations are numbered so that an acknowledgement answers the revocation it was given for: after a
    /// handshake that timed out, the application's late "next" must not release a newer revocation it has not
    /// even seen yet.
    private var lastRevocation: UInt64 = 0
    private var revocationHandedOut: UInt64?
    private var revocationAcknowledged: UInt64 = 0
    /// Events buffered ahead of the application before the poll thread waits.
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    enum OfferAction: Equatable {
        /// The application is `capacity` events behind: wait for a change, then offer again.
        case waitForSpace
        /// Finished: the event is dropped (and a revocation counts as acknowledged).
        case dropped
        /// Buffered; the number is the revocation's, to wait for with ``isAcknowledged(_:)``.
        case buffered(revocation: UInt64?)
        /// Hand it to the parked application at once.
        case resumeApplication(revocation: UInt64?)
    }

    /// The poll thread offers `event` (a revocation when `isRevocation`, which the poll thread then waits on).
    mutating func offer(_ event: KafkaConsumerEvent, isRevocation: Bool) -> OfferAction {
        if finished { return .dropped }
        if buffer.count >= capacity { return .waitForSpace }
        var number: UInt64?
        if isRevocation {
            lastRevocation += 1
            number = lastRevocation
        }
        if applicationWaiting {
            applicationWaiting = false
            if let number { revocationHandedOut = number }
            return .resumeApplication(revocation: number)
        }
        buffer.append((event, number))
        return .buffered(revocation: number)
    }

    /// Whether the poll thread's revocation `number` is settled: the application asked for the event after it, or
    /// the channel finished.
    func isAcknowledged(_ number: UInt64) -> Bool {
        finished || revocationAcknowledged >= number
    }

    enum RequestAction {
        /// Return this event to the application.
        case deliver(KafkaConsumerEvent)
        /// Nothing buffered: park the application until an offer resumes it.
        case park
        /// The channel finished (or the caller was cancelled): return nil.
        case end
    }

    /// The application asks for the next event. Asking means it is done with a revocation handed out before, so
    /// the step may also have settled the poll thread's wait (and freed buffer space): the caller wakes it.
    mutating func request(cancelled: Bool) -> RequestAction {
        if let handedOut = revocationHandedOut {
            revocationHandedOut = nil
            revocationAcknowledged = max(revocationAcknowledged, handedOut)
        }
        if finished || cancelled { return .end }
        if !buffer.isEmpty {
            let next = buffer.removeFirst()
            if let revocation = next.revocation { revocationHandedOut = revocation }
            return .deliver(next.event)
        }
        applicationWaiting = true
        return .park
    }

    /// The application's parked request was cancelled. Returns whether it was parked (the caller resumes it with
    /// nil); an offer that already took it has resumed it.
    mutating func cancelRequest() -> Bool {
        defer { applicationWaiting = false }
        return applicationWaiting
    }

    /// No more events. Returns whether the application was parked (the caller resumes it with nil).
    mutating func finish() -> Bool {
        finished = true
        buffer.removeAll()
        defer { applicationWaiting = false }
        return applicationWaiting
    }
}

/// Hands events from the poll thread to the application's task: ``ConsumerEventMachine`` decides, this shell
/// blocks the poll thread and parks the application's continuation.
// @unchecked Sendable: `machine` and `waiter` are guarded by `condition`; the poll thread blocks on it (its own
// thread, never the cooperative pool) while async callers only take the lock briefly.
final class ConsumerEventChannel: @unchecked Sendable {
    private let condition = NSCondition()
    private var machine: ConsumerEventMachine
    private var waiter: CheckedContinuation<KafkaConsumerEvent?, Never>?

    init(capacity: Int = 4) {
        machine = ConsumerEventMachine(capacity: capacity)
    }

    // MARK: Poll thread side

    /// Adds an event, waiting (on the poll thread) while the application is `capacity` events behind.
    func push(_ event: KafkaConsumerEvent) {
        condition.lock()
        defer { condition.unlock() }
        _ = offer(event, isRevocation: false)
    }

    /// Adds a `.revoked`/`.lost` event and waits until the application has taken it and asked for the next
    /// event, at most `timeout`. Returns false if the wait timed out.
    @discardableResult
    func pushAndAwaitAcknowledgement(_ event: KafkaConsumerEvent, timeout: Duration) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.wholeMilliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        guard let number = offer(event, isRevocation: true) else { return true }
        while !machine.isAcknowledged(number) {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// One offer, waiting for space as the machine says; returns the revocation number (nil: none, or dropped).
    /// Called with the lock held.
    private func offer(_ event: KafkaConsumerEvent, isRevocation: Bool) -> UInt64? {
        while true {
            switch machine.offer(event, isRevocation: isRevocation) {
            case .waitForSpace:
                condition.wait()
            case .dropped:
                return nil
            case .buffered(let number):
                return number
            case .resumeApplication(let number):
                let waiter = self.waiter
                self.waiter = nil
                waiter?.resume(returning: event)
                return number
            }
        }
    }

    /// No more events: waiting iterators get `nil`, a waiting poll thread is released.
    func finish() {
        condition.lock()
        defer { condition.unlock() }
        if machine.finish() { resumeWaiter(with: nil) }
        condition.broadcast()
    }

    private func resumeWaiter(with event: KafkaConsumerEvent?) {
        let waiter = self.waiter
        self.waiter = nil
        waiter?.resume(returning: event)
    }

    // MARK: Application side

    func next() async -> KafkaConsumerEvent? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<KafkaConsumerEvent?, Never>) in
                condition.lock()
                defer { condition.unlock() }
                let action = machine.request(cancelled: Task.isCancelled)
                // The request may have acknowledged a revocation or freed space: the poll thread looks again.
                condition.broadcast()
                switch action {
                case .deliver(let event): continuation.resume(returning: event)
                case .end: continuation.resume(returning: nil)
                case .park: waiter = continuation
                }
            }
        } onCancel: {
            condition.lock()
            defer { condition.unlock() }
            if machine.cancelRequest() { resumeWaiter(with: nil) }
        }
    }
}
