import Foundation

/// The one thread that creates every child.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that created the child exits, not the process: a child created from a
/// pool thread that the runtime retires after a while would be killed with it. This thread is started once and
/// never returns, so the signal fires only when the whole process dies.
final class SpawnerThread: Sendable {
    static let shared = SpawnerThread()

    private let condition = NSCondition()
    /// Guarded by `condition`.
    private nonisolated(unsafe) var queue: [@Sendable () -> Void] = []

    private init() {
        let thread = Thread { [condition] in
            while true {
                condition.lock()
                while self.queue.isEmpty { condition.wait() }
                let work = self.queue.removeFirst()
                condition.unlock()
                work()
            }
        }
        thread.name = "activity-sync-spawner"
        thread.start()
    }

    /// Runs `body` on the spawner thread and returns its result; the caller blocks meanwhile.
    func run<Result: Sendable>(_ body: @escaping @Sendable () -> Result) -> Result {
        let slot = Slot<Result>()
        condition.lock()
        queue.append {
            let value = body()
            slot.done.lock()
            slot.value = value
            slot.done.signal()
            slot.done.unlock()
        }
        condition.signal()
        condition.unlock()
        slot.done.lock()
        defer { slot.done.unlock() }
        while true {
            if let value = slot.value { return value }
            slot.done.wait()
        }
    }

    /// One result handed from the spawner thread to the caller.
    private final class Slot<Value: Sendable>: @unchecked Sendable {
        // @unchecked: `value` is only read and written with `done` locked.
        let done = NSCondition()
        var value: Value?
    }
}
