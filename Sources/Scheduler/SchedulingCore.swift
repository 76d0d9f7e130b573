public import Cron
public import Foundation
public import SyncModel

/// What the scheduling core needs to know about one account: nothing secret. Jobs carry no sealed config (the
/// worker reads it from the accounts partition beside the job's), so the scheduler never holds one.
public struct ScheduledAccount: Sendable, Hashable {
    public var accountId: String
    /// The accounts-topic partition the account came from, so a revocation can drop exactly those accounts.
    public var partition: Int32
    public var integration: String
    public var schedule: CronExpression
    /// Whether jobs fire: the record's `enabled`, and not paused.
    public var enabled: Bool
    /// Paused (`settings.paused`): counted in the paused gauge; `enabled` is false then too.
    public var paused: Bool
    /// The version of the record's bytes, which a `needs_reauth` status names to hold the account's jobs back
    /// (``SchedulingCore/applyStatus(of:holdingRecord:statusPartition:now:)``); nil never matches one.
    public var version: AccountVersion?

    public init(
        accountId: String, partition: Int32, integration: String, schedule: CronExpression, enabled: Bool = true,
        paused: Bool = false, version: AccountVersion? = nil
    ) {
        self.accountId = accountId
        self.partition = partition
        self.integration = integration
        self.schedule = schedule
        self.enabled = enabled
        self.paused = paused
        self.version = version
    }
}

/// How many owned accounts of one integration are paused or held for re-authentication.
public struct HeldAccounts: Sendable, Hashable {
    /// `settings.paused` set (`accounts pause`).
    public var paused: Int
    /// Status `needs_reauth` judged on the record the scheduler holds: no jobs until the record changes.
    public var needsReauth: Int

    public init(paused: Int = 0, needsReauth: Int = 0) {
        self.paused = paused
        self.needsReauth = needsReauth
    }
}

/// A job the core decided to fire now.
public struct DueJob: Sendable, Hashable {
    public var accountId: String
    public var partition: Int32
    public var integration: String
    /// The cron tick this job stands for; part of the job id, so every scheduler firing this tick agrees on it.
    public var scheduledAt: Date
    /// When the job was meant to go out: the tick plus the account's spread offset.
    public var dueAt: Date
    /// True for the one job fired after an account is (re)loaded to cover ticks nobody may have fired.
    public var isCatchUp: Bool

    public init(
        accountId: String, partition: Int32, integration: String, scheduledAt: Date, dueAt: Date, isCatchUp: Bool
    ) {
        self.accountId = accountId
        self.partition = partition
        self.integration = integration
        self.scheduledAt = scheduledAt
        self.dueAt = dueAt
        self.isCatchUp = isCatchUp
    }

    /// The job as it goes on the jobs topic.
    public var job: SyncJob { SyncJob(accountId: accountId, integration: integration, scheduledAt: scheduledAt) }
}

/// Tuning of the scheduling core.
public struct SchedulingPolicy: Sendable {
    /// The widest spread offset. An account fires at its tick plus a deterministic offset below
    /// `min(gap to the next tick, maxSpread)`, so 100k `*/5` accounts spread over the five minutes instead of all
    /// firing at :00, while an `@daily` account still syncs within the hour after midnight.
    public var maxSpread: Duration = .seconds(3600)

    public init(maxSpread: Duration = .seconds(3600)) { self.maxSpread = maxSpread }
}

/// The pure scheduling state of one scheduler: which accounts it owns and when each fires next.
///
/// No clock and no I/O — callers pass `now` — so tests drive it through days of ticks in milliseconds.
///
/// ## Catch-up after downtime
/// The scheduler persists nothing. When an account is loaded (its partition was just assigned, after a start, a
/// crash of another scheduler or a rebalance), the core cannot know whether its most recent due tick was fired.
/// So it fires that one tick — the latest tick whose due time is not after `now` — immediately, as the catch-up,
/// and then continues with the following ticks. Ticks before it are *not* fired: the worker reads everything
/// since the account's state watermark, so one job covers any length of downtime. If the tick was in fact fired
/// already (the previous owner fired it before dying), the catch-up is a duplicate with the same job id
/// `{accountId}@{tick}`, which the worker recognises. Accounts that leave and come back to the same scheduler
/// (an eager rebalance) remember what they fired and skip the catch-up when it would repeat it.
///
/// A job that becomes due while the scheduler is behind (a paused process) likewise fires once, for the latest
/// due tick, not once per tick it slept through.
///
/// ## Changes
/// An upserted account keeps its slot: a new schedule or a flip of `enabled` recomputes the next fire from `now`,
/// another integration is used by the next fire, and a removal discards the pending fire — all effective by the
/// account's next tick. A changed sealed config (a token refresh) is no concern of the core: the worker reads the
/// account's current record when it runs the job.
///
/// ## Held for re-authentication
/// A `needs_reauth` status names the version of the account's record it was judged on
/// (``applyStatus(of:holdingRecord:statusPartition:now:)``). While the account's current record is that version, no
/// job fires — not even the catch-up of a newly loaded account: the token was rejected, and only a new record (a
/// reconnect, `accounts resume`) can change that. Any other version — the record changed before the status
/// arrived, or changes afterwards — releases the hold, and a released account fires its latest due tick at once,
/// as a newly loaded one does. A status naming no version holds nothing. The judged version is kept per account
/// whose newest status holds one (whether or not its record is loaded yet, so statuses may be read first), and the
/// slot's `heldForReauth` bit says whether it matches.
///
/// ## Memory
/// Per account: one 64-byte slot (including the record's 8-byte version) in a contiguous array (the integration
/// and cron expression are interned), its id (inline up to 15 UTF-8 bytes, else a heap string), a
/// `[String: Int32]` index entry and a 16-byte binary min-heap entry (due time, slot, generation). Removed or
/// rescheduled entries stay in the heap until popped (their generation no longer matches) and the heap is rebuilt
/// when such garbage outnumbers live entries. Per account whose newest status is `needs_reauth` with a version, a
/// `judged` entry besides (its id, 8-byte version and 4-byte status partition).
public struct SchedulingCore: Sendable {
    public let policy: SchedulingPolicy

    /// Laid out by hand (64 bytes): three optionals and five booleans as such would make it 88, 24 MB more at 1M
    /// accounts.
    private struct Slot: Sendable {
        var accountId: String
        var spreadHash: UInt64
        /// ``AccountVersion`` of the record, meaningful when `hasVersion`.
        var recordVersion: UInt64
        private var pendingTickRaw: Int64
        private var lastFiredTickRaw: Int64
        var partition: Int32
        var expression: Int32
        var generation: UInt32
        /// Index into `integrations`: a few integration keys are shared by all accounts.
        var integration: UInt16
        private var flags: UInt8

        init(
            accountId: String, partition: Int32, integration: UInt16, expression: Int32, spreadHash: UInt64,
            enabled: Bool, generation: UInt32, pendingTick: Int64?, pendingIsCatchUp: Bool, lastFiredTick: Int64?,
            live: Bool, paused: Bool, version: AccountVersion?
        ) {
            self.accountId = accountId
            self.spreadHash = spreadHash
            self.recordVersion = version?.rawValue ?? 0
            self.pendingTickRaw = pendingTick ?? .min
            self.lastFiredTickRaw = lastFiredTick ?? .min
            self.partition = partition
            self.integration = integration
            self.expression = expression
            self.generation = generation
            self.flags = 0
            self.enabled = enabled
            self.pendingIsCatchUp = pendingIsCatchUp
            self.live = live
            self.paused = paused
            self.hasVersion = version != nil
        }

        /// The tick the pending heap entry stands for (seconds since the epoch), or nil when nothing is pending.
        var pendingTick: Int64? {
            get { pendingTickRaw == .min ? nil : pendingTickRaw }
            set { pendingTickRaw = newValue ?? .min }
        }
        /// The last tick fired (seconds), to skip a repeated catch-up.
        var lastFiredTick: Int64? {
            get { lastFiredTickRaw == .min ? nil : lastFiredTickRaw }
            set { lastFiredTickRaw = newValue ?? .min }
        }
        var enabled: Bool {
            get { flag(0) }
            set { setFlag(0, newValue) }
        }
        var pendingIsCatchUp: Bool {
            get { flag(1) }
            set { setFlag(1, newValue) }
        }
        var live: Bool {
            get { flag(2) }
            set { setFlag(2, newValue) }
        }
        var paused: Bool {
            get { flag(3) }
            set { setFlag(3, newValue) }
        }
        var hasVersion: Bool {
            get { flag(4) }
            set { setFlag(4, newValue) }
        }
        /// A `needs_reauth` status named this record's version: no job fires until the record changes.
        var heldForReauth: Bool {
            get { flag(5) }
            set { setFlag(5, newValue) }
        }
        /// Whether its ticks fire.
        var active: Bool { enabled && !heldForReauth }
        var version: AccountVersion? { hasVersion ? AccountVersion(rawValue: recordVersion) : nil }

        private func flag(_ bit: UInt8) -> Bool { flags & (1 << bit) != 0 }
        private mutating func setFlag(_ bit: UInt8, _ value: Bool) {
            if value { flags |= 1 << bit } else { flags &= ~(1 << bit) }
        }
    }

    private struct HeapEntry: Sendable {
        var dueMillis: Int64
        var slot: Int32
        var generation: UInt32
    }

    private var slots: [Slot] = []
    private var freeSlots: [Int32] = []
    private var index: [String: Int32] = [:]
    private var heap: [HeapEntry] = []
    private var expressions: [CronExpression] = []
    private var integrations: [String] = []
    private var integrationIndex: [String: UInt16] = [:]
    private var expressionIndex: [String: Int32] = [:]
    /// Last fired tick of accounts whose partition was revoked, consulted when they come back.
    private var parked: [String: Int64] = [:]
    /// Per account whose newest status is `needs_reauth` naming a record version: that version, and the status
    /// partition it came from (dropped when that partition is revoked).
    private var judged: [String: (version: UInt64, statusPartition: Int32)] = [:]
    /// Per integration (by interned id), owned accounts paused and held for re-authentication, kept as slots change
    /// so the gauges cost nothing to read.
    private var pausedCounts: [Int] = []
    private var heldCounts: [Int] = []
    /// Per expression: the latest tick at or before `now` and the one before it, computed once per `now`.
    private var recentTicks: [Int32: (now: Int64, latest: Int64?, previous: Int64?)] = [:]

    public init(policy: SchedulingPolicy = SchedulingPolicy()) {
        self.policy = policy
    }

    /// Number of accounts owned (enabled or not).
    public var count: Int { index.count }

    /// Number of pending fires in the timer heap, including stale entries not yet discarded.
    public var heapCount: Int { heap.count }

    /// Reserves room for `capacity` accounts, to load a large partition without repeated reallocation.
    public mutating func reserveCapacity(_ capacity: Int) {
        slots.reserveCapacity(capacity)
        index.reserveCapacity(capacity)
        heap.reserveCapacity(capacity)
    }

    /// Whether the account is owned here.
    public func contains(_ accountId: String) -> Bool { index[accountId] != nil }

    /// The owned account ids, for tests and listings.
    public var accountIds: [String] { Array(index.keys) }

    /// When the account's next fire is due, or nil if it is not owned, disabled, held or never fires again.
    public func nextDue(of accountId: String) -> Date? {
        guard let slotIndex = index[accountId] else { return nil }
        let slot = slots[Int(slotIndex)]
        guard slot.active, let tick = slot.pendingTick else { return nil }
        if slot.pendingIsCatchUp { return nil }
        return Date(millis: due(tick: tick, slot: slot))
    }

    /// The earliest pending due time, so the caller knows how long it may sleep.
    public mutating func earliestDue() -> Date? {
        discardStaleTop()
        return heap.first.map { Date(millis: $0.dueMillis) }
    }

    /// Adds or changes an account.
    ///
    /// A newly owned account gets the catch-up described on the type; a changed one keeps its progress. A record of
    /// another version ends a hold for re-authentication.
    public mutating func upsert(_ account: ScheduledAccount, now: Date) {
        let nowMillis = now.millis
        let expression = intern(account.schedule)
        let integration = intern(integration: account.integration)
        if let slotIndex = index[account.accountId] {
            var slot = slots[Int(slotIndex)]
            tally(slot, -1)
            let scheduleChanged = slot.expression != expression || slot.enabled != account.enabled
            let wasActive = slot.active
            slot.partition = account.partition
            slot.integration = integration
            slot.expression = expression
            slot.enabled = account.enabled
            slot.paused = account.paused
            if slot.version != account.version {
                slot.hasVersion = account.version != nil
                slot.recordVersion = account.version?.rawValue ?? 0
                slot.heldForReauth = isJudged(account)
            }
            slots[Int(slotIndex)] = slot
            tally(slot, 1)
            guard scheduleChanged || wasActive != slot.active else { return }
            if slot.active && !wasActive {
                scheduleLoaded(slotIndex, nowMillis: nowMillis)
            } else {
                scheduleNext(slotIndex, after: nil, nowMillis: nowMillis)
            }
            return
        }
        var slot = Slot(
            accountId: account.accountId, partition: account.partition, integration: integration,
            expression: expression, spreadHash: Self.spreadHash(account.accountId), enabled: account.enabled,
            generation: 0, pendingTick: nil, pendingIsCatchUp: false,
            lastFiredTick: parked.removeValue(forKey: account.accountId), live: true, paused: account.paused,
            version: account.version)
        slot.heldForReauth = isJudged(account)
        tally(slot, 1)
        let slotIndex: Int32
        if let free = freeSlots.popLast() {
            slotIndex = free
            let generation = slots[Int(free)].generation &+ 1
            slots[Int(free)] = slot
            slots[Int(free)].generation = generation
        } else {
            slotIndex = Int32(slots.count)
            slots.append(slot)
        }
        index[account.accountId] = slotIndex
        if slots[Int(slotIndex)].active { scheduleLoaded(slotIndex, nowMillis: nowMillis) }
    }

    private func isJudged(_ account: ScheduledAccount) -> Bool {
        guard let version = account.version, let judged = judged[account.accountId] else { return false }
        return judged.version == version.rawValue
    }

    /// Applies the account's newest status: held for re-authentication while its record is version `judged` (the
    /// worker found its token rejected with exactly that record). Pass nil for any status that is not
    /// `needs_reauth` or names no version (an old record): that ends a hold.
    ///
    /// The version is kept even when the account is not loaded (yet) or has another record here: the record it
    /// names may still arrive.
    /// - Parameter statusPartition: where the status came from, for ``forgetStatuses(ofPartitions:now:)``.
    /// - Returns: whether the account's hold changed.
    @discardableResult
    public mutating func applyStatus(
        of accountId: String, holdingRecord judged: AccountVersion?, statusPartition: Int32, now: Date
    ) -> Bool {
        if let judged {
            self.judged[accountId] = (judged.rawValue, statusPartition)
        } else {
            self.judged.removeValue(forKey: accountId)
        }
        guard let slotIndex = index[accountId] else { return false }
        var slot = slots[Int(slotIndex)]
        let hold = judged != nil && slot.version == judged
        guard hold != slot.heldForReauth else { return false }
        tally(slot, -1)
        slot.heldForReauth = hold
        slots[Int(slotIndex)] = slot
        tally(slot, 1)
        if hold {
            invalidate(slotIndex)
        } else {
            // Something ran since (an explicit enqueue): the account simply continues with its next tick.
            scheduleNext(slotIndex, after: slot.lastFiredTick, nowMillis: now.millis)
        }
        return true
    }

    /// Whether the account is held for re-authentication.
    public func isHeldForReauth(_ accountId: String) -> Bool {
        index[accountId].map { slots[Int($0)].heldForReauth } ?? false
    }

    /// Owned accounts paused or held for re-authentication, by integration (every integration seen, zeros
    /// included, so a gauge that went to zero says so).
    public var heldAccounts: [String: HeldAccounts] {
        var counts: [String: HeldAccounts] = [:]
        for (id, integration) in integrations.enumerated() {
            counts[integration] = HeldAccounts(paused: pausedCounts[id], needsReauth: heldCounts[id])
        }
        return counts
    }

    /// Stops scheduling an account (tombstone). Its pending fire is discarded.
    @discardableResult
    public mutating func remove(_ accountId: String) -> Bool {
        guard let slotIndex = index.removeValue(forKey: accountId) else { return false }
        release(slotIndex)
        return true
    }

    /// Drops every account of these partitions (revocation), remembering what each fired last in case the
    /// partition comes back. Returns how many accounts were dropped.
    @discardableResult
    public mutating func removePartitions(_ partitions: Set<Int32>) -> Int {
        var dropped = 0
        for slotIndex in slots.indices where slots[slotIndex].live && partitions.contains(slots[slotIndex].partition) {
            let slot = slots[slotIndex]
            if let fired = slot.lastFiredTick { parked[slot.accountId] = fired }
            index.removeValue(forKey: slot.accountId)
            release(Int32(slotIndex))
            dropped += 1
        }
        return dropped
    }

    /// Forgets the statuses read from revoked status partitions; the accounts they held are released (if still
    /// owned, which with aligned partition counts they are not).
    public mutating func forgetStatuses(ofPartitions partitions: Set<Int32>, now: Date) {
        let forgotten = judged.filter { partitions.contains($0.value.statusPartition) }.map(\.key)
        for accountId in forgotten {
            applyStatus(of: accountId, holdingRecord: nil, statusPartition: 0, now: now)
        }
    }

    /// Number of accounts whose newest status holds a record version (loaded here or not).
    public var judgedCount: Int { judged.count }

    /// Forgets what revoked accounts fired; call once an assignment is fully loaded.
    public mutating func forgetParked() { parked = [:] }

    /// Removes and returns the jobs due at or before `now` (at most `limit`), scheduling each account's next tick.
    public mutating func popDue(now: Date, limit: Int = .max) -> [DueJob] {
        let nowMillis = now.millis
        var jobs: [DueJob] = []
        while jobs.count < limit, let top = heap.first, top.dueMillis <= nowMillis {
            popHeap()
            let slotIndex = top.slot
            var slot = slots[Int(slotIndex)]
            guard slot.live, slot.generation == top.generation, slot.active, let tick = slot.pendingTick else {
                continue
            }
            jobs.append(
                DueJob(
                    accountId: slot.accountId, partition: slot.partition,
                    integration: integrations[Int(slot.integration)],
                    scheduledAt: Date(timeIntervalSince1970: TimeInterval(tick)), dueAt: Date(millis: top.dueMillis),
                    isCatchUp: slot.pendingIsCatchUp))
            slot.lastFiredTick = tick
            slot.pendingTick = nil
            slots[Int(slotIndex)] = slot
            scheduleNext(slotIndex, after: tick, nowMillis: nowMillis)
        }
        return jobs
    }

    // MARK: - Scheduling

    /// Fires the latest due tick at once (unless this scheduler already fired it), then continues normally.
    private mutating func scheduleLoaded(_ slotIndex: Int32, nowMillis: Int64) {
        let slot = slots[Int(slotIndex)]
        if let tick = latestDueTick(slot: slot, nowMillis: nowMillis), tick > (slot.lastFiredTick ?? .min) {
            push(slotIndex, tick: tick, dueMillis: nowMillis, catchUp: true)
        } else {
            scheduleNext(slotIndex, after: slot.lastFiredTick, nowMillis: nowMillis)
        }
    }

    /// Schedules the first tick after `after` whose due time is later than `now` (skipping ticks slept through).
    private mutating func scheduleNext(_ slotIndex: Int32, after firedTick: Int64?, nowMillis: Int64) {
        let slot = slots[Int(slotIndex)]
        guard slot.active else {
            invalidate(slotIndex)
            return
        }
        let expression = expressions[Int(slot.expression)]
        // Ticks are at least one second apart and the offset is below the gap, so every tick whose second is
        // after now - maxSpread - 1 s could still be due in the future; start there to keep the loop short.
        let floor = nowMillis / 1000 - Int64(policy.maxSpread.components.seconds) - 1
        var from = max(firedTick ?? .min, floor)
        var guardCount = 0
        while let tick = expression.nextSecond(after: from) {
            let due = due(tick: tick, slot: slot, expression: expression)
            if due > nowMillis {
                push(slotIndex, tick: tick, dueMillis: due, catchUp: false)
                return
            }
            from = tick
            guardCount += 1
            if guardCount > 100_000 { break }
        }
        invalidate(slotIndex)
    }

    /// The latest tick whose due time is at or before now: the newest tick at or before now if its offset has
    /// passed, else the one before it (whose due time is before the newest tick, hence before now).
    private mutating func latestDueTick(slot: Slot, nowMillis: Int64) -> Int64? {
        let nowSeconds = nowMillis / 1000
        let ticks: (now: Int64, latest: Int64?, previous: Int64?)
        if let cached = recentTicks[slot.expression], cached.now == nowSeconds {
            ticks = cached
        } else {
            let expression = expressions[Int(slot.expression)]
            let latest = expression.latestSecond(atOrBefore: nowSeconds)
            let previous = latest.flatMap { expression.latestSecond(atOrBefore: $0 - 1) }
            ticks = (nowSeconds, latest, previous)
            recentTicks[slot.expression] = ticks
        }
        guard let latest = ticks.latest else { return nil }
        if due(tick: latest, slot: slot) <= nowMillis { return latest }
        return ticks.previous
    }

    private func due(tick: Int64, slot: Slot, expression: CronExpression? = nil) -> Int64 {
        let expression = expression ?? expressions[Int(slot.expression)]
        let maxSpreadMillis = policy.maxSpread.wholeMilliseconds
        let gapMillis: Int64
        if let next = expression.nextSecond(after: tick) {
            gapMillis = min((next - tick) * 1000, maxSpreadMillis)
        } else {
            gapMillis = maxSpreadMillis
        }
        guard gapMillis > 0 else { return tick * 1000 }
        return tick * 1000 + Int64(slot.spreadHash % UInt64(gapMillis))
    }

    /// The account's spread offset for a tick, exposed so tests and docs can show the spread.
    public func spreadOffset(of accountId: String, tick: Date) -> Duration? {
        guard let slotIndex = index[accountId] else { return nil }
        let slot = slots[Int(slotIndex)]
        let seconds = Int64(tick.timeIntervalSince1970.rounded(.down))
        return .milliseconds(due(tick: seconds, slot: slot) - seconds * 1000)
    }

    /// FNV-1a over the id, finished with a splitmix64 round so `mod gap` is uniform. Stable across processes and
    /// versions (unlike `Hasher`), which keeps every scheduler's offsets — and so its fire times — identical.
    public static func spreadHash(_ accountId: String) -> UInt64 {
        var hash = StableHash.fnv1a(accountId.utf8)
        hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
        hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
        return hash ^ (hash >> 31)
    }

    private mutating func intern(integration: String) -> UInt16 {
        if let existing = integrationIndex[integration] { return existing }
        // The validator admits only the configured integrations, a handful.
        precondition(integrations.count < Int(UInt16.max), "more than 65,535 distinct integrations")
        let id = UInt16(integrations.count)
        integrations.append(integration)
        integrationIndex[integration] = id
        pausedCounts.append(0)
        heldCounts.append(0)
        return id
    }

    private mutating func intern(_ expression: CronExpression) -> Int32 {
        if let existing = expressionIndex[expression.source] { return existing }
        let id = Int32(expressions.count)
        expressions.append(expression)
        expressionIndex[expression.source] = id
        return id
    }

    /// Adds (`delta` 1) or removes (-1) a live slot's part in the paused and held counts; called around every
    /// change of a slot's integration, pause or hold.
    private mutating func tally(_ slot: Slot, _ delta: Int) {
        guard slot.live else { return }
        if slot.paused { pausedCounts[Int(slot.integration)] += delta }
        if slot.heldForReauth { heldCounts[Int(slot.integration)] += delta }
    }

    private mutating func release(_ slotIndex: Int32) {
        tally(slots[Int(slotIndex)], -1)
        slots[Int(slotIndex)].live = false
        slots[Int(slotIndex)].pendingTick = nil
        slots[Int(slotIndex)].generation &+= 1
        // Drop the id's heap string now rather than when the slot is reused.
        slots[Int(slotIndex)].accountId = ""
        freeSlots.append(slotIndex)
        compactIfMostlyStale()
    }

    private mutating func invalidate(_ slotIndex: Int32) {
        slots[Int(slotIndex)].pendingTick = nil
        slots[Int(slotIndex)].generation &+= 1
    }

    // MARK: - Heap

    private mutating func push(_ slotIndex: Int32, tick: Int64, dueMillis: Int64, catchUp: Bool) {
        slots[Int(slotIndex)].generation &+= 1
        slots[Int(slotIndex)].pendingTick = tick
        slots[Int(slotIndex)].pendingIsCatchUp = catchUp
        heap.append(HeapEntry(dueMillis: dueMillis, slot: slotIndex, generation: slots[Int(slotIndex)].generation))
        siftUp(heap.count - 1)
        compactIfMostlyStale()
    }

    private mutating func popHeap() {
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
    }

    private func isLive(_ entry: HeapEntry) -> Bool {
        let slot = slots[Int(entry.slot)]
        return slot.live && slot.generation == entry.generation && slot.pendingTick != nil
    }

    private mutating func discardStaleTop() {
        while let top = heap.first, !isLive(top) { popHeap() }
    }

    private mutating func compactIfMostlyStale() {
        guard heap.count > 1024, heap.count > 2 * index.count + 1024 else { return }
        var entries = heap
        heap = []
        entries.removeAll { !isLive($0) }
        heap = entries
        // Floyd's heapify.
        for position in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(position) }
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        let entry = heap[child]
        while child > 0 {
            let parent = (child - 1) / 2
            guard entry.dueMillis < heap[parent].dueMillis else { break }
            heap[child] = heap[parent]
            child = parent
        }
        heap[child] = entry
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let entry = heap[parent]
        let count = heap.count
        while true {
            let left = 2 * parent + 1
            guard left < count else { break }
            let right = left + 1
            let child = right < count && heap[right].dueMillis < heap[left].dueMillis ? right : left
            guard heap[child].dueMillis < entry.dueMillis else { break }
            heap[parent] = heap[child]
            parent = child
        }
        heap[parent] = entry
    }
}

extension Date {
    var millis: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
    init(millis: Int64) { self.init(timeIntervalSince1970: TimeInterval(millis) / 1000) }
}
