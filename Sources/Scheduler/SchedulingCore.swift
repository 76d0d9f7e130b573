public import Cron
public import Foundation
public import SyncModel

/// What the scheduling core needs to know about one account.
public struct ScheduledAccount: Sendable, Hashable {
    public var accountId: String
    /// The accounts-topic partition the account came from, so a revocation can drop exactly those accounts.
    public var partition: Int32
    public var integration: String
    public var schedule: CronExpression
    public var sealedConfig: SealedConfig
    public var enabled: Bool

    public init(
        accountId: String, partition: Int32, integration: String, schedule: CronExpression,
        sealedConfig: SealedConfig, enabled: Bool = true
    ) {
        self.accountId = accountId
        self.partition = partition
        self.integration = integration
        self.schedule = schedule
        self.sealedConfig = sealedConfig
        self.enabled = enabled
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
    public var sealedConfig: SealedConfig

    public init(
        accountId: String, partition: Int32, integration: String, scheduledAt: Date, dueAt: Date, isCatchUp: Bool,
        sealedConfig: SealedConfig
    ) {
        self.accountId = accountId
        self.partition = partition
        self.integration = integration
        self.scheduledAt = scheduledAt
        self.dueAt = dueAt
        self.isCatchUp = isCatchUp
        self.sealedConfig = sealedConfig
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
/// An upserted account keeps its slot: a new sealed config is used by the next fire, a new schedule or a flip of
/// `enabled` recomputes the next fire from `now`, and a removal discards the pending fire — all effective by the
/// account's next tick.
///
/// ## Memory
/// One 64-byte slot per account in a contiguous array, every ciphertext base64-decoded back to back in one
/// buffer (the integration, key id and algorithm are interned), a `[String: Int32]` index and a binary min-heap of
/// 16-byte entries (due time, slot, generation). Removed or rescheduled entries stay in the heap until popped
/// (their generation no longer matches) and the heap is rebuilt when such garbage outnumbers live entries.
public struct SchedulingCore: Sendable {
    public let policy: SchedulingPolicy

    /// The largest sealed config (base64 text) an account may have; a GitHub token pair seals to ~230 bytes.
    public static let maxCiphertextBytes = 65_535

    /// Laid out by hand (64 bytes): optionals and booleans would pad it to ~120, which is 56 MB at 1M accounts.
    private struct Slot: Sendable {
        var accountId: String
        var spreadHash: UInt64
        private var pendingTickRaw: Int64
        private var lastFiredTickRaw: Int64
        var partition: Int32
        /// Index into `kinds`: integration, key id and algorithm are shared by many accounts.
        var kind: Int32
        var expression: Int32
        var generation: UInt32
        /// Where the sealed config's ciphertext is in `ciphertexts`: base64-decoded (a quarter smaller than the
        /// text), or its UTF-8 bytes when it was not base64.
        var ciphertextOffset: UInt32
        var ciphertextLength: UInt16
        private var flags: UInt8

        init(
            accountId: String, partition: Int32, kind: Int32, expression: Int32,
            ciphertext: (offset: UInt32, length: UInt16),
            ciphertextIsBase64: Bool, spreadHash: UInt64, enabled: Bool, generation: UInt32, pendingTick: Int64?,
            pendingIsCatchUp: Bool, lastFiredTick: Int64?, live: Bool
        ) {
            self.accountId = accountId
            self.ciphertextOffset = ciphertext.offset
            self.ciphertextLength = ciphertext.length
            self.spreadHash = spreadHash
            self.pendingTickRaw = pendingTick ?? .min
            self.lastFiredTickRaw = lastFiredTick ?? .min
            self.partition = partition
            self.kind = kind
            self.expression = expression
            self.generation = generation
            self.flags = 0
            self.ciphertextIsBase64 = ciphertextIsBase64
            self.enabled = enabled
            self.pendingIsCatchUp = pendingIsCatchUp
            self.live = live
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
        var ciphertextIsBase64: Bool {
            get { flag(3) }
            set { setFlag(3, newValue) }
        }

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
    /// Every account's ciphertext back to back in one buffer: a million small arrays would cost a malloc chunk
    /// and header each, and interleave with parsing garbage so freed memory could not go back to the system.
    private var ciphertexts = CiphertextStore()
    private var expressions: [CronExpression] = []
    private struct Kind: Hashable, Sendable {
        var integration: String
        var keyId: String
        var algorithm: String
    }
    private var kinds: [Kind] = []
    private var kindIndex: [Kind: Int32] = [:]
    private var expressionIndex: [String: Int32] = [:]
    /// Last fired tick of accounts whose partition was revoked, consulted when they come back.
    private var parked: [String: Int64] = [:]
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

    /// When the account's next fire is due, or nil if it is not owned, disabled or never fires again.
    public func nextDue(of accountId: String) -> Date? {
        guard let slotIndex = index[accountId] else { return nil }
        let slot = slots[Int(slotIndex)]
        guard slot.enabled, let tick = slot.pendingTick else { return nil }
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
    /// A newly owned account gets the catch-up described on the type; a changed one keeps its progress.
    public mutating func upsert(_ account: ScheduledAccount, now: Date) {
        let nowMillis = now.millis
        let expression = intern(account.schedule)
        if let slotIndex = index[account.accountId] {
            var slot = slots[Int(slotIndex)]
            let scheduleChanged = slot.expression != expression || slot.enabled != account.enabled
            let wasEnabled = slot.enabled
            slot.partition = account.partition
            slot.kind = intern(account)
            let compacted = Self.compact(account.sealedConfig.ciphertext)
            ciphertexts.release(length: slot.ciphertextLength)
            let stored = ciphertexts.append(compacted.bytes)
            (slot.ciphertextOffset, slot.ciphertextLength) = (stored.offset, stored.length)
            slot.ciphertextIsBase64 = compacted.isBase64
            slot.expression = expression
            slot.enabled = account.enabled
            slots[Int(slotIndex)] = slot
            compactCiphertextsIfMostlyGarbage()
            guard scheduleChanged else { return }
            if account.enabled && !wasEnabled {
                scheduleLoaded(slotIndex, nowMillis: nowMillis)
            } else {
                scheduleNext(slotIndex, after: nil, nowMillis: nowMillis)
            }
            return
        }
        let compacted = Self.compact(account.sealedConfig.ciphertext)
        let slot = Slot(
            accountId: account.accountId, partition: account.partition, kind: intern(account),
            expression: expression, ciphertext: ciphertexts.append(compacted.bytes),
            ciphertextIsBase64: compacted.isBase64,
            spreadHash: Self.spreadHash(account.accountId), enabled: account.enabled, generation: 0,
            pendingTick: nil, pendingIsCatchUp: false, lastFiredTick: parked.removeValue(forKey: account.accountId),
            live: true)
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
        if account.enabled { scheduleLoaded(slotIndex, nowMillis: nowMillis) }
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
            guard slot.live, slot.generation == top.generation, slot.enabled, let tick = slot.pendingTick else {
                continue
            }
            let kind = kinds[Int(slot.kind)]
            let bytes = ciphertexts.bytes(offset: slot.ciphertextOffset, length: slot.ciphertextLength)
            let ciphertext =
                slot.ciphertextIsBase64
                ? Data(bytes).base64EncodedString() : String(decoding: bytes, as: UTF8.self)
            jobs.append(
                DueJob(
                    accountId: slot.accountId, partition: slot.partition, integration: kind.integration,
                    scheduledAt: Date(timeIntervalSince1970: TimeInterval(tick)), dueAt: Date(millis: top.dueMillis),
                    isCatchUp: slot.pendingIsCatchUp,
                    sealedConfig: SealedConfig(keyId: kind.keyId, algorithm: kind.algorithm, ciphertext: ciphertext)))
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
        guard slot.enabled else {
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
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in accountId.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
        hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
        return hash ^ (hash >> 31)
    }

    private mutating func intern(_ account: ScheduledAccount) -> Int32 {
        let kind = Kind(
            integration: account.integration, keyId: account.sealedConfig.keyId,
            algorithm: account.sealedConfig.algorithm)
        if let existing = kindIndex[kind] { return existing }
        let id = Int32(kinds.count)
        kinds.append(kind)
        kindIndex[kind] = id
        return id
    }

    /// Rewrites the ciphertext store without the bytes of removed or replaced configs once those outweigh the live
    /// ones (token refreshes replace every account's config a few times a day).
    private mutating func compactCiphertextsIfMostlyGarbage() {
        guard ciphertexts.garbage > 16 << 20, ciphertexts.garbage > ciphertexts.live else { return }
        var fresh = CiphertextStore()
        fresh.reserve(ciphertexts.live)
        for index in slots.indices where slots[index].live {
            let slot = slots[index]
            let stored = fresh.append(ciphertexts.bytes(offset: slot.ciphertextOffset, length: slot.ciphertextLength))
            slots[index].ciphertextOffset = stored.offset
        }
        ciphertexts = fresh
    }

    private static func compact(_ ciphertext: String) -> (bytes: [UInt8], isBase64: Bool) {
        if let data = Data(base64Encoded: ciphertext), data.base64EncodedString() == ciphertext {
            return (Array(data), true)
        }
        return (Array(ciphertext.utf8), false)
    }

    private mutating func intern(_ expression: CronExpression) -> Int32 {
        if let existing = expressionIndex[expression.source] { return existing }
        let id = Int32(expressions.count)
        expressions.append(expression)
        expressionIndex[expression.source] = id
        return id
    }

    private mutating func release(_ slotIndex: Int32) {
        slots[Int(slotIndex)].live = false
        slots[Int(slotIndex)].pendingTick = nil
        slots[Int(slotIndex)].generation &+= 1
        // Drop the heavy fields now rather than when the slot is reused.
        slots[Int(slotIndex)].accountId = ""
        ciphertexts.release(length: slots[Int(slotIndex)].ciphertextLength)
        slots[Int(slotIndex)].ciphertextLength = 0
        compactCiphertextsIfMostlyGarbage()
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

/// Append-only byte store with garbage accounting; compacted by the core.
struct CiphertextStore: Sendable {
    private var buffer: [UInt8] = []
    private(set) var garbage = 0

    var live: Int { buffer.count - garbage }

    mutating func reserve(_ count: Int) { buffer.reserveCapacity(count) }

    /// - Important: Configs are at most ``SchedulingCore/maxCiphertextBytes``; the validator rejects larger ones.
    mutating func append(_ bytes: some Collection<UInt8>) -> (offset: UInt32, length: UInt16) {
        precondition(bytes.count <= Int(UInt16.max), "sealed config larger than SchedulingCore.maxCiphertextBytes")
        precondition(buffer.count + bytes.count <= Int(UInt32.max), "ciphertext store beyond 4 GB")
        let length = UInt16(bytes.count)
        let offset = UInt32(clamping: buffer.count)
        buffer.append(contentsOf: bytes)
        return (offset, length)
    }

    mutating func release(length: UInt16) { garbage += Int(length) }

    func bytes(offset: UInt32, length: UInt16) -> ArraySlice<UInt8> {
        buffer[Int(offset)..<Int(offset) + Int(length)]
    }
}

extension Date {
    var millis: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
    init(millis: Int64) { self.init(timeIntervalSince1970: TimeInterval(millis) / 1000) }
}
