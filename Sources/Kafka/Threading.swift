import Dispatch
import Foundation
import Synchronization

/// Where librdkafka's blocking calls (flush, commit, transactions, metadata, watermarks) run, so they never
/// block Swift's cooperative pool.
let kafkaBlockingQueue = DispatchQueue(label: "activity-sync.kafka.blocking", attributes: .concurrent)

/// Runs a blocking librdkafka call on `kafkaBlockingQueue` and awaits its result.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        kafkaBlockingQueue.async {
            continuation.resume(returning: body())
        }
    }
}

/// Runs `body` on a thread of its own and waits at most `timeout` for it.
///
/// Used for calls that are known to hang in some librdkafka versions (`rd_kafka_destroy` of a group consumer
/// after a broker restart, confluentinc/librdkafka#4674): if the time runs out the thread is left behind
/// (leaked) and `nil` is returned, instead of hanging the caller.
func runOnOwnThread<T: Sendable>(
    name: String, timeout: Duration, _ body: @escaping @Sendable () -> T
) async -> T? {
    return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
        // The continuation is resumed exactly once: whoever flips `claimed` first resumes it.
        let box = OnceContinuation(continuation)
        let thread = Thread {
            let result = body()
            box.resume(returning: result)
        }
        thread.name = name
        thread.start()
        let nanoseconds = Int(clamping: timeout.wholeMilliseconds * 1_000_000)
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
            box.resume(returning: nil)
        }
    }
}

/// A continuation that may be resumed from several racing places; only the first resume counts.
final class OnceContinuation<T: Sendable>: Sendable {
    private let state: Mutex<CheckedContinuation<T, Never>?>

    init(_ continuation: CheckedContinuation<T, Never>) {
        state = Mutex(continuation)
    }

    func resume(returning value: T) {
        let continuation = state.withLock { current -> CheckedContinuation<T, Never>? in
            defer { current = nil }
            return current
        }
        continuation?.resume(returning: value)
    }
}

/// The one thread that polls a librdkafka client (serves delivery reports, rebalances, errors, statistics).
final class PollThread: Sendable {
    private let stopRequested = Atomic<Bool>(false)
    private let exited = DispatchSemaphore(value: 0)

    /// Starts a thread that calls `pollOnce` until `requestStop()`; `pollOnce` should block at most ~100 ms.
    init(name: String, pollOnce: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            Thread.current.name = name  // on Linux the OS-level name is only set from the thread itself
            while !self.stopRequested.load(ordering: .acquiring) {
                pollOnce()
            }
            self.exited.signal()
        }
        thread.name = name
        thread.start()
    }

    var isStopRequested: Bool { stopRequested.load(ordering: .acquiring) }

    func requestStop() {
        stopRequested.store(true, ordering: .releasing)
    }

    /// Blocks (only ever call it from a non-cooperative thread) until the thread has exited, at most `timeout`.
    func waitUntilExited(timeout: Duration) -> Bool {
        let nanoseconds = Int(clamping: timeout.wholeMilliseconds * 1_000_000)
        if exited.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success {
            exited.signal()  // let a second waiter through too
            return true
        }
        return false
    }
}
