import Cron
import Foundation
import Scheduler
import SyncModel
import Testing

private func utc(_ text: String) -> Date { try! Date(text, strategy: .iso8601) }

private func account(
    _ id: String, _ cron: String = "*/5 * * * *", partition: Int32 = 0, integration: String = "github",
    enabled: Bool = true
) -> ScheduledAccount {
    ScheduledAccount(
        accountId: id, partition: partition, integration: integration, schedule: try! CronExpression(cron),
        enabled: enabled)
}

/// Steps a core through time like the service's timer loop does, collecting every fire.
private struct Simulation {
    var core: SchedulingCore
    var now: Date
    var fired: [(at: Date, job: DueJob)] = []

    mutating func run(until end: Date, step: TimeInterval = 1) {
        while now <= end {
            for job in core.popDue(now: now) { fired.append((now, job)) }
            now = now.addingTimeInterval(step)
        }
    }
}

@Suite("Scheduling core (controllable clock)")
struct SchedulingCoreTests {
    let noSpread = SchedulingPolicy(maxSpread: .zero)

    @Test func firesOnTicksAfterOneCatchUp() {
        var core = SchedulingCore(policy: noSpread)
        core.upsert(account("a"), now: utc("2026-12-01T04:03:10Z"))
        // Loading fires the latest tick once, straight away, then the schedule.
        let first = core.popDue(now: utc("2026-12-01T04:03:10Z"))
        #expect(first.map(\.job.jobId) == ["a@2026-12-01T04:00:00Z"])
        #expect(first.first?.isCatchUp == true)
        #expect(core.popDue(now: utc("2026-12-01T04:04:59.999Z")).isEmpty)
        let second = core.popDue(now: utc("2026-12-01T04:05:00Z"))
        #expect(second.map(\.job.jobId) == ["a@2026-12-01T04:05:00Z"])
        #expect(second.first?.isCatchUp == false)
        #expect(core.nextDue(of: "a") == utc("2026-12-01T04:10:00Z"))

        var simulation = Simulation(core: core, now: utc("2026-12-01T04:05:01Z"))
        simulation.run(until: utc("2026-12-01T05:00:00Z"))
        #expect(simulation.fired.count == 11)
        #expect(simulation.fired.allSatisfy { $0.at == $0.job.scheduledAt })
    }

    @Test func secondsCronFiresEveryTwoSeconds() {
        var core = SchedulingCore(policy: noSpread)
        core.upsert(account("fast", "*/2 * * * * *"), now: utc("2026-12-01T04:00:00.500Z"))
        var simulation = Simulation(core: core, now: utc("2026-12-01T04:00:00.500Z"))
        simulation.run(until: utc("2026-12-01T04:00:10Z"), step: 0.25)
        #expect(
            simulation.fired.map(\.job.scheduledAt)
                == [0, 2, 4, 6, 8, 10].map {
                    utc("2026-12-01T04:00:00Z").addingTimeInterval(TimeInterval($0))
                })
    }

    @Test func spreadDistributesAccountsOverThePeriod() {
        let now = utc("2026-12-01T04:00:00Z")
        var core = SchedulingCore()
        var again = SchedulingCore()
        let count = 100_000
        core.reserveCapacity(count)
        for number in 0..<count { core.upsert(account("acct-\(number)"), now: now) }
        again.upsert(account("acct-42"), now: now)
        // Deterministic: any scheduler computes the same offset for the same account.
        #expect(core.spreadOffset(of: "acct-42", tick: now) == again.spreadOffset(of: "acct-42", tick: now))

        _ = core.popDue(now: now)  // catch-ups of the 03:55 tick
        var perMinute = [Int](repeating: 0, count: 5)
        var simulation = Simulation(core: core, now: now.addingTimeInterval(1))
        simulation.run(until: now.addingTimeInterval(300), step: 1)
        for (at, job) in simulation.fired where job.scheduledAt == now {
            let offset = job.dueAt.timeIntervalSince(job.scheduledAt)
            #expect(offset >= 0 && offset < 300)
            // Fired at the first simulation step at or after its due time.
            #expect(at >= job.dueAt && at.timeIntervalSince(job.dueAt) < 1)
            perMinute[Int(offset / 60)] += 1
        }
        #expect(perMinute.reduce(0, +) == count)
        for bucket in perMinute { #expect(abs(bucket - count / 5) < count / 50, "\(perMinute)") }
        // Each account's fires stay one period apart.
        let dueTimes = simulation.fired.filter { $0.job.accountId == "acct-7" }.map(\.job.dueAt)
        #expect(dueTimes.count == 1)
    }

    @Test func oneCatchUpPerAccountAfterDowntime() {
        // A scheduler that owned the accounts fires normally…
        var before = SchedulingCore(policy: noSpread)
        for name in ["a", "b", "c"] { before.upsert(account(name), now: utc("2026-12-01T04:00:30Z")) }
        _ = before.popDue(now: utc("2026-12-01T04:00:30Z"))
        #expect(before.popDue(now: utc("2026-12-01T04:05:00Z")).count == 3)

        // …then nothing runs for an hour. The restarted scheduler fires one job per account, for the latest tick.
        var after = SchedulingCore(policy: noSpread)
        let restart = utc("2026-12-01T05:07:12Z")
        for name in ["a", "b", "c"] { after.upsert(account(name), now: restart) }
        let catchUp = after.popDue(now: restart)
        #expect(catchUp.count == 3)
        #expect(
            Set(catchUp.map(\.job.jobId)) == [
                "a@2026-12-01T05:05:00Z", "b@2026-12-01T05:05:00Z", "c@2026-12-01T05:05:00Z",
            ])
        #expect(after.popDue(now: restart.addingTimeInterval(60)).isEmpty)
        #expect(after.popDue(now: utc("2026-12-01T05:10:00Z")).count == 3)

        // A process that was paused (not restarted) for an hour also fires once, not once per missed tick.
        let paused = before.popDue(now: utc("2026-12-01T06:02:00Z"))
        #expect(paused.count == 3)
        #expect(before.popDue(now: utc("2026-12-01T06:04:59Z")).isEmpty)
    }

    @Test func catchUpRespectsTheSpreadOffset() {
        var core = SchedulingCore()
        let tick = utc("2026-12-01T04:00:00Z")
        core.upsert(account("x"), now: tick)
        let offset = core.spreadOffset(of: "x", tick: tick)!
        // Before its offset has passed, the 04:00 tick is not yet due: the catch-up is the 03:55 tick.
        var fresh = SchedulingCore()
        fresh.upsert(account("x"), now: tick.addingTimeInterval(0.0005))
        let jobs = fresh.popDue(now: tick.addingTimeInterval(0.0005))
        if offset > .milliseconds(1) {
            #expect(jobs.map(\.scheduledAt) == [utc("2026-12-01T03:55:00Z")])
        }
    }

    @Test func removalAndChangesTakeEffectByTheNextTick() {
        var core = SchedulingCore(policy: noSpread)
        let start = utc("2026-12-01T04:01:00Z")
        for name in ["keep", "gone", "slower", "rotated", "paused"] { core.upsert(account(name), now: start) }
        _ = core.popDue(now: start)
        core.remove("gone")
        core.upsert(account("slower", "*/10 * * * *"), now: start.addingTimeInterval(1))
        core.upsert(account("rotated", integration: "gitlab"), now: start.addingTimeInterval(1))
        // A token refresh rewrites the record unchanged as far as scheduling goes: no extra fire, no reschedule.
        core.upsert(account("keep"), now: start.addingTimeInterval(1))
        core.upsert(account("paused", enabled: false), now: start.addingTimeInterval(1))

        let at0405 = core.popDue(now: utc("2026-12-01T04:05:00Z"))
        #expect(Set(at0405.map(\.accountId)) == ["keep", "rotated"])
        #expect(at0405.count == 2)
        #expect(at0405.first { $0.accountId == "rotated" }?.job.integration == "gitlab")
        let at0410 = core.popDue(now: utc("2026-12-01T04:10:00Z"))
        #expect(Set(at0410.map(\.accountId)) == ["keep", "rotated", "slower"])
        #expect(!core.contains("gone"))
        #expect(core.count == 4)

        // Re-enabling behaves like a load: one catch-up now.
        core.upsert(account("paused"), now: utc("2026-12-01T04:12:00Z"))
        #expect(core.popDue(now: utc("2026-12-01T04:12:00Z")).map(\.job.jobId) == ["paused@2026-12-01T04:10:00Z"])
    }

    @Test func revokedPartitionsStopFiringAndReturningOnesDoNotRepeatTheCatchUp() {
        var core = SchedulingCore(policy: noSpread)
        let start = utc("2026-12-01T04:01:00Z")
        core.upsert(account("p0", partition: 0), now: start)
        core.upsert(account("p1", partition: 1), now: start)
        #expect(core.popDue(now: start).count == 2)
        #expect(core.removePartitions([1]) == 1)
        #expect(core.popDue(now: utc("2026-12-01T04:05:00Z")).map(\.accountId) == ["p0"])
        // The partition comes back (eager rebalance): p1's 04:05 tick was missed, so it is caught up once…
        core.upsert(account("p1", partition: 1), now: utc("2026-12-01T04:06:00Z"))
        #expect(core.popDue(now: utc("2026-12-01T04:06:00Z")).map(\.job.jobId) == ["p1@2026-12-01T04:05:00Z"])
        // …but a quick revoke/assign round trip with nothing missed fires nothing extra.
        core.removePartitions([0, 1])
        core.upsert(account("p0", partition: 0), now: utc("2026-12-01T04:07:00Z"))
        core.upsert(account("p1", partition: 1), now: utc("2026-12-01T04:07:00Z"))
        core.forgetParked()
        #expect(core.popDue(now: utc("2026-12-01T04:07:00Z")).isEmpty)
        #expect(core.popDue(now: utc("2026-12-01T04:10:00Z")).count == 2)
    }

    @Test func impossibleScheduleNeverFiresAndDoesNotStall() {
        var core = SchedulingCore(policy: noSpread)
        core.upsert(account("never", "0 0 30 2 *"), now: utc("2026-12-01T04:00:00Z"))
        core.upsert(account("ok"), now: utc("2026-12-01T04:00:00Z"))
        #expect(core.popDue(now: utc("2026-12-01T04:00:00Z")).map(\.accountId) == ["ok"])
        #expect(core.nextDue(of: "never") == nil)
    }
}

/// What the scheduler reads of an account record.
@Suite struct AccountValidationTests {
    /// A paused account is scheduled like a disabled one (no jobs); resuming (a record without `paused`) fires again.
    @Test func aPausedAccountIsNotFired() throws {
        let validator = AccountValidator(knownIntegrations: ["github"])
        var record = AccountRecord(
            accountId: "42", integration: "github", settings: AccountSettings(frequency: "*/5 * * * *"),
            sealedConfig: SealedConfig(keyId: "k", ciphertext: "AAAA"), updatedAt: Date())
        func enabled(_ record: AccountRecord) throws -> Bool? {
            guard
                case .upsert(let schedule) = validator.validate(key: Array("42".utf8), value: try record.messageBytes())
            else { return nil }
            return schedule.enabled
        }
        #expect(try enabled(record) == true)
        record.settings.paused = AccountSettings.Pause(reason: .manual, at: Date())
        #expect(try enabled(record) == false)
    }
}

/// Accounts whose token was rejected: no jobs while their record is the one the worker judged.
@Suite("Scheduling core: held for re-authentication")
struct ReauthHoldTests {
    let noSpread = SchedulingPolicy(maxSpread: .zero)
    let v1 = AccountVersion(recordBytes: Array(#"{"type":"account","v":1}"#.utf8))
    let v2 = AccountVersion(recordBytes: Array(#"{"type":"account","v":2}"#.utf8))

    private func record(_ id: String, _ version: AccountVersion, paused: Bool = false, integration: String = "github")
        -> ScheduledAccount
    {
        ScheduledAccount(
            accountId: id, partition: 0, integration: integration, schedule: try! CronExpression("*/5 * * * *"),
            enabled: !paused, paused: paused, version: version)
    }

    @Test("needs_reauth for the current record: no job on later ticks; a new record fires at once, then on ticks")
    func heldUntilTheRecordChanges() {
        var core = SchedulingCore(policy: noSpread)
        core.upsert(record("a", v1), now: utc("2026-12-01T04:03:10Z"))
        #expect(core.popDue(now: utc("2026-12-01T04:03:10Z")).map(\.job.jobId) == ["a@2026-12-01T04:00:00Z"])
        // The worker ran that job with record v1 and found the token rejected.
        core.applyStatus(of: "a", holdingRecord: v1, statusPartition: 0, now: utc("2026-12-01T04:03:11Z"))
        #expect(core.isHeldForReauth("a"))
        #expect(core.nextDue(of: "a") == nil)
        var simulation = Simulation(core: core, now: utc("2026-12-01T04:03:12Z"))
        simulation.run(until: utc("2026-12-01T06:00:00Z"), step: 10)
        #expect(simulation.fired.isEmpty, "\(simulation.fired.map(\.job.job.jobId))")
        // The same record read again (a rebalance, a re-delivery) changes nothing.
        core = simulation.core
        core.upsert(record("a", v1), now: utc("2026-12-01T06:00:01Z"))
        #expect(core.popDue(now: utc("2026-12-01T06:00:02Z")).isEmpty)
        // Reconnected: a new record. Its latest tick fires at once, then the schedule continues.
        core.upsert(record("a", v2), now: utc("2026-12-01T06:01:00Z"))
        #expect(!core.isHeldForReauth("a"))
        #expect(core.popDue(now: utc("2026-12-01T06:01:00Z")).map(\.job.jobId) == ["a@2026-12-01T06:00:00Z"])
        #expect(core.popDue(now: utc("2026-12-01T06:05:00Z")).map(\.job.jobId) == ["a@2026-12-01T06:05:00Z"])
    }

    @Test("a status naming no version (an old record) or an older record holds nothing")
    func oldOrStaleStatusesHoldNothing() {
        var core = SchedulingCore(policy: noSpread)
        core.upsert(record("old", v1), now: utc("2026-12-01T04:03:10Z"))
        core.upsert(record("stale", v2), now: utc("2026-12-01T04:03:10Z"))
        _ = core.popDue(now: utc("2026-12-01T04:03:10Z"))
        core.applyStatus(of: "old", holdingRecord: nil, statusPartition: 0, now: utc("2026-12-01T04:03:11Z"))
        // Judged on v1, but the account was reconnected (v2) before the status arrived.
        core.applyStatus(of: "stale", holdingRecord: v1, statusPartition: 0, now: utc("2026-12-01T04:03:11Z"))
        #expect(!core.isHeldForReauth("old") && !core.isHeldForReauth("stale"))
        #expect(Set(core.popDue(now: utc("2026-12-01T04:05:00Z")).map(\.accountId)) == ["old", "stale"])
        #expect(core.heldAccounts["github"]?.needsReauth == 0)
    }

    @Test("a status read before its account's record holds it from the start: no catch-up fire")
    func statusBeforeRecord() {
        var core = SchedulingCore(policy: noSpread)
        core.applyStatus(of: "a", holdingRecord: v1, statusPartition: 3, now: utc("2026-12-01T04:03:10Z"))
        core.upsert(record("a", v1), now: utc("2026-12-01T04:03:10Z"))
        #expect(core.popDue(now: utc("2026-12-01T04:10:00Z")).isEmpty)
        // Its status partition revoked: the judgement is forgotten (the next owner reads it again).
        core.forgetStatuses(ofPartitions: [3], now: utc("2026-12-01T04:10:01Z"))
        #expect(core.judgedCount == 0)
        #expect(core.popDue(now: utc("2026-12-01T04:15:00Z")).map(\.job.jobId) == ["a@2026-12-01T04:15:00Z"])
    }

    @Test("paused and held accounts are counted per integration, and uncounted when they change or leave")
    func heldAccountCounts() {
        var core = SchedulingCore(policy: noSpread)
        let now = utc("2026-12-01T04:03:10Z")
        core.upsert(record("p1", v1, paused: true), now: now)
        core.upsert(record("p2", v1, paused: true), now: now)
        core.upsert(record("crm", v1, paused: true, integration: "crm"), now: now)
        core.upsert(record("r1", v1), now: now)
        core.upsert(record("ok", v1), now: now)
        core.applyStatus(of: "r1", holdingRecord: v1, statusPartition: 0, now: now)
        #expect(
            core.heldAccounts == ["github": HeldAccounts(paused: 2, needsReauth: 1), "crm": HeldAccounts(paused: 1)])
        core.upsert(record("p1", v2), now: now)  // resumed
        core.remove("p2")
        core.upsert(record("r1", v2), now: now)  // reconnected
        #expect(core.heldAccounts == ["github": HeldAccounts(), "crm": HeldAccounts(paused: 1)])
        core.removePartitions([0])
        #expect(core.heldAccounts == ["github": HeldAccounts(), "crm": HeldAccounts()])
    }
}
