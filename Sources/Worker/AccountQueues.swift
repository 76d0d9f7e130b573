/// Decides which job runs next: jobs of one account strictly one after another, different accounts
/// concurrently up to a limit, accounts served in the order their jobs arrived.
///
/// One account's syncs must not overlap: both would read the same state and write conflicting successors.
/// The limit bounds open GitHub connections and memory. Pure and I/O-free; the caller runs what it returns.
struct AccountQueues<Item: Sendable>: Sendable {
    let concurrency: Int
    private var running: Set<String> = []
    private var waiting: [String: [Item]] = [:]
    /// Accounts that have waiting jobs and are not running, in arrival order.
    private var ready: [String] = []
    private var readyStart = 0

    init(concurrency: Int) {
        precondition(concurrency > 0, "concurrency must be at least 1")
        self.concurrency = concurrency
    }

    var runningCount: Int { running.count }
    var waitingCount: Int { waiting.values.reduce(0) { $0 + $1.count } }
    var isIdle: Bool { running.isEmpty && waiting.isEmpty }

    /// Adds a job. Returns it back when it may start right away.
    mutating func enqueue(_ item: Item, account: String) -> Item? {
        if running.contains(account) || waiting[account] != nil {
            waiting[account, default: []].append(item)
            return nil
        }
        if running.count < concurrency {
            running.insert(account)
            return item
        }
        waiting[account] = [item]
        ready.append(account)
        return nil
    }

    /// Marks the account's running job done. Returns the jobs that may start now (at most one per account).
    mutating func finished(account: String) -> [(account: String, item: Item)] {
        guard running.remove(account) != nil else { return [] }
        if waiting[account] != nil { ready.append(account) }
        var started: [(String, Item)] = []
        while running.count < concurrency, readyStart < ready.count {
            let next = ready[readyStart]
            readyStart += 1
            guard var queue = waiting[next], !queue.isEmpty, !running.contains(next) else { continue }
            let item = queue.removeFirst()
            waiting[next] = queue.isEmpty ? nil : queue
            running.insert(next)
            started.append((next, item))
            // An account with more jobs re-queues when its current one finishes, not now.
        }
        if readyStart > 256, readyStart * 2 > ready.count {
            ready.removeFirst(readyStart)
            readyStart = 0
        }
        return started
    }

    /// The account's waiting jobs, in arrival order.
    func waiting(of account: String) -> [Item] { waiting[account] ?? [] }

    /// Drops the account's waiting jobs the predicate selects (e.g. older ticks a newer one supersedes); returns
    /// them in arrival order.
    mutating func removeWaiting(of account: String, where shouldRemove: (Item) -> Bool) -> [Item] {
        guard let queue = waiting[account] else { return [] }
        let kept = queue.filter { !shouldRemove($0) }
        waiting[account] = kept.isEmpty ? nil : kept
        return queue.filter(shouldRemove)
    }

    /// Drops waiting jobs the predicate selects (e.g. those of revoked partitions). Running ones are the caller's.
    mutating func removeWaiting(where shouldRemove: (Item) -> Bool) -> [Item] {
        var removed: [Item] = []
        for (account, queue) in waiting {
            let kept = queue.filter { !shouldRemove($0) }
            removed += queue.filter(shouldRemove)
            waiting[account] = kept.isEmpty ? nil : kept
        }
        return removed
    }
}
