import Foundation

/// An async semaphore: at most `limit` holders at once, the rest wait in arrival order without blocking a thread.
///
/// Per integration and worker, so one slow integration cannot take every job slot of the worker (its
/// `--concurrency`) and a CLI that forks a heavy runtime (Node, Python) is not started 64 times at once.
actor ConcurrencyLimit {
    let limit: Int
    private var holders = 0
    private var waiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextId = 0
    private var cancelledEarly = Set<Int>()

    init(limit: Int) { self.limit = max(1, limit) }

    /// Waits for a slot. - Throws: `CancellationError` if the task is cancelled while waiting (no slot is held).
    func acquire() async throws {
        try Task.checkCancellation()
        if holders < limit {
            holders += 1
            return
        }
        let id = nextId
        nextId += 1
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if cancelledEarly.remove(id) != nil {
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiters.append((id, continuation))
                }
            }
        } onCancel: {
            Task { await self.cancel(id) }
        }
    }

    /// Hands the slot to the longest waiter, or frees it.
    func release() {
        if waiters.isEmpty {
            holders -= 1
        } else {
            waiters.removeFirst().continuation.resume()
        }
    }

    /// Runs `body` holding a slot.
    func withSlot<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await acquire()
        do {
            let value = try await body()
            release()
            return value
        } catch {
            release()
            throw error
        }
    }

    private func cancel(_ id: Int) {
        if let index = waiters.firstIndex(where: { $0.id == id }) {
            waiters.remove(at: index).continuation.resume(throwing: CancellationError())
        } else {
            // Cancelled before it queued (or after it got the slot, when this is a no-op for the caller).
            cancelledEarly.insert(id)
        }
    }
}
