import Foundation
import Synchronization

/// An async semaphore with two limits: requests in flight per token and in the whole process.
///
/// GitHub allows at most 100 concurrent requests per user and answers more with secondary rate limits, so
/// every request takes a slot for its token and a global slot first. Waiters are served first come, first
/// served; a cancelled waiter leaves the queue and throws `CancellationError`.
final class RequestLimiter: Sendable {
    private struct Waiter {
        var id: UInt64
        var key: String
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var inFlight = 0
        var perKey: [String: Int] = [:]
        var waiters: [Waiter] = []
        var nextId: UInt64 = 0
    }

    let perKeyLimit: Int
    let globalLimit: Int
    private let state = Mutex(State())

    init(perKeyLimit: Int, globalLimit: Int) {
        self.perKeyLimit = max(1, perKeyLimit)
        self.globalLimit = max(1, globalLimit)
    }

    /// Runs `body` holding one slot for `key` and one global slot.
    func withSlot<T: Sendable>(key: String, _ body: () async throws -> T) async throws -> T {
        try await acquire(key: key)
        defer { release(key: key) }
        return try await body()
    }

    func acquire(key: String) async throws {
        let id: UInt64 = state.withLock { state in
            state.nextId += 1
            return state.nextId
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // Check and enqueue under one lock, so a release between the two cannot be missed.
                enum Action { case run, cancel, wait }
                let action = state.withLock { state -> Action in
                    if Task.isCancelled { return .cancel }
                    if state.waiters.isEmpty, canGrant(key, state) {
                        grant(key, &state)
                        return .run
                    }
                    state.waiters.append(Waiter(id: id, key: key, continuation: continuation))
                    return .wait
                }
                switch action {
                case .run: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    func release(key: String) {
        let ready: [Waiter] = state.withLock { state in
            state.inFlight -= 1
            let remaining = (state.perKey[key] ?? 1) - 1
            state.perKey[key] = remaining > 0 ? remaining : nil
            var ready: [Waiter] = []
            var index = 0
            while index < state.waiters.count, state.inFlight < globalLimit {
                let waiter = state.waiters[index]
                if canGrant(waiter.key, state) {
                    grant(waiter.key, &state)
                    ready.append(state.waiters.remove(at: index))
                } else {
                    index += 1
                }
            }
            return ready
        }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Requests currently holding a slot, for tests and metrics.
    var inFlight: Int { state.withLock { $0.inFlight } }

    /// Requests queued for a slot, for tests.
    var waiting: Int { state.withLock { $0.waiters.count } }

    private func canGrant(_ key: String, _ state: State) -> Bool {
        state.inFlight < globalLimit && (state.perKey[key] ?? 0) < perKeyLimit
    }

    private func grant(_ key: String, _ state: inout State) {
        state.inFlight += 1
        state.perKey[key, default: 0] += 1
    }
}
