/// Decides which job runs next: jobs of one account strictly one after another, different accounts
/// concurrently up to a limit, accounts served in the order their jobs arrived — except that a lane (an
/// integration) at its own limit is skipped, and its jobs wait here without taking one of the worker's slots.
///
/// One account's syncs must not overlap: both would read the same state and write conflicting successors.
/// The limit bounds open GitHub connections and memory. A lane limit keeps one slow integration (an SDK CLI that
/// runs 30 s at concurrency 2) from filling every slot with jobs that only wait for its own slots, which stalled
/// every other integration of the worker. Pure and I/O-free; the caller runs what it returns.
struct AccountQueues<Item: Sendable>: Sendable {
    let concurrency: Int
    /// Jobs of a lane that may run at once; a lane not named here is bounded by `concurrency` alone.
    let laneLimits: [String: Int]
    /// Running accounts, with the lane of their running job.
    private var running: [String: String] = [:]
    private var waiting: [String: [(item: Item, lane: String)]] = [:]
    /// Per lane: accounts that have waiting jobs and are not running, in arrival order (a global sequence number,
    /// so the oldest head among lanes with room starts first).
    private var lanes: [String: Lane] = [:]
    private var sequence: UInt64 = 0

    private struct Lane: Sendable {
        var ready: [(sequence: UInt64, account: String)] = []
        var start = 0
        var running = 0
        var head: UInt64? { start < ready.count ? ready[start].sequence : nil }
    }

    init(concurrency: Int, laneLimits: [String: Int] = [:]) {
        precondition(concurrency > 0, "concurrency must be at least 1")
        self.concurrency = concurrency
        self.laneLimits = laneLimits.mapValues { max(1, $0) }
    }

    var runningCount: Int { running.count }
    var waitingCount: Int { waiting.values.reduce(0) { $0 + $1.count } }
    var isIdle: Bool { running.isEmpty && waiting.isEmpty }
    func runningCount(lane: String) -> Int { lanes[lane]?.running ?? 0 }

    /// Adds a job. Returns it back when it may start right away.
    mutating func enqueue(_ item: Item, account: String, lane: String = "") -> Item? {
        if running[account] != nil || waiting[account] != nil {
            waiting[account, default: []].append((item, lane))
            return nil
        }
        if running.count < concurrency, hasRoom(lane) {
            start(account, lane: lane)
            return item
        }
        waiting[account] = [(item, lane)]
        makeReady(account, lane: lane)
        return nil
    }

    /// Marks the account's running job done. Returns the jobs that may start now (at most one per account).
    mutating func finished(account: String) -> [(account: String, item: Item)] {
        guard let lane = running.removeValue(forKey: account) else { return [] }
        lanes[lane, default: Lane()].running -= 1
        if let next = waiting[account]?.first { makeReady(account, lane: next.lane) }
        var started: [(String, Item)] = []
        while running.count < concurrency, let lane = oldestReadyLane() {
            let next = lanes[lane]!.ready[lanes[lane]!.start].account
            lanes[lane]!.start += 1
            compact(lane)
            guard var queue = waiting[next], !queue.isEmpty, running[next] == nil else { continue }
            if queue[0].lane != lane {
                // Its earlier job was dropped (a revocation) and the next one belongs in another lane.
                makeReady(next, lane: queue[0].lane)
                continue
            }
            let item = queue.removeFirst().item
            waiting[next] = queue.isEmpty ? nil : queue
            start(next, lane: lane)
            started.append((next, item))
            // An account with more jobs re-queues when its current one finishes, not now.
        }
        return started
    }

    /// The account's waiting jobs, in arrival order.
    func waiting(of account: String) -> [Item] { waiting[account]?.map(\.item) ?? [] }

    /// Drops the account's waiting jobs the predicate selects (e.g. older ticks a newer one supersedes); returns
    /// them in arrival order. Call it while the account runs: it is then in no lane's ready list.
    mutating func removeWaiting(of account: String, where shouldRemove: (Item) -> Bool) -> [Item] {
        guard let queue = waiting[account] else { return [] }
        let kept = queue.filter { !shouldRemove($0.item) }
        waiting[account] = kept.isEmpty ? nil : kept
        return queue.filter { shouldRemove($0.item) }.map(\.item)
    }

    /// Drops waiting jobs the predicate selects (e.g. those of revoked partitions). Running ones are the caller's.
    mutating func removeWaiting(where shouldRemove: (Item) -> Bool) -> [Item] {
        var removed: [Item] = []
        for (account, queue) in waiting {
            let kept = queue.filter { !shouldRemove($0.item) }
            removed += queue.filter { shouldRemove($0.item) }.map(\.item)
            waiting[account] = kept.isEmpty ? nil : kept
        }
        return removed
    }

    private func hasRoom(_ lane: String) -> Bool {
        guard let limit = laneLimits[lane] else { return true }
        return (lanes[lane]?.running ?? 0) < limit
    }

    private mutating func start(_ account: String, lane: String) {
        running[account] = lane
        lanes[lane, default: Lane()].running += 1
    }

    private mutating func makeReady(_ account: String, lane: String) {
        sequence += 1
        lanes[lane, default: Lane()].ready.append((sequence, account))
    }

    /// The lane with room whose first ready account arrived first.
    private func oldestReadyLane() -> String? {
        var best: (lane: String, sequence: UInt64)?
        for (name, lane) in lanes where hasRoom(name) {
            guard let head = lane.head else { continue }
            if best == nil || head < best!.sequence { best = (name, head) }
        }
        return best?.lane
    }

    private mutating func compact(_ lane: String) {
        guard let entry = lanes[lane], entry.start > 256, entry.start * 2 > entry.ready.count else { return }
        lanes[lane]!.ready.removeFirst(entry.start)
        lanes[lane]!.start = 0
    }
}
