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
            // Runs on the actor before it suspends, so the waiter is queued before any `cancel(id)` can run.
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                waiters.append((id, continuation))
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

    /// A waiter that is no longer queued already got its slot: cancellation is then the body's business.
    private func cancel(_ id: Int) {
        if let index = waiters.firstIndex(where: { $0.id == id }) {
            waiters.remove(at: index).continuation.resume(throwing: CancellationError())
        }
    }
}
