import Foundation
import Testing

@testable import GitHub

/// The stuck-subject rules on their own: which failed versions wait, which are given up, and which a thread that
/// moved on leaves behind to be emitted. No simulator, no clock.
@Suite("Stuck-subject ledger")
struct StuckSubjectLedgerTests {
    let now = Date(timeIntervalSince1970: 1_796_097_900)

    func version(_ updatedAt: String) -> GitHubState.StuckItem.Version {
        .init(
            updatedAt: updatedAt, reason: "assign", type: "Issue", title: "Never loads",
            url: "https://api.github.com/repos/octo/stuck/issues/77", repo: "octo/stuck", repoURL: nil)
    }

    func ledger(_ stored: [String: GitHubState.StuckItem] = [:]) -> StuckSubjectLedger {
        StuckSubjectLedger(stored: stored, giveUpAfterSyncs: 3, giveUpAfterAge: 6 * 3600, now: now)
    }

    @Test("a first failure is kept for the next sync, counted once, from now")
    func firstFailureKept() {
        var ledger = ledger()
        let v1 = version("2026-12-01T10:00:00Z")
        var entry = ledger.open(thread: "1", listed: [v1.updatedAt], failedNow: true)
        #expect(ledger.retry(v1, failed: true, in: &entry) == .keep)
        #expect(ledger.settle(entry).isEmpty)
        #expect(ledger.failedThreads == 1)
        #expect(ledger.records == ["1": .init(since: now, failures: 1, superseded: [v1])])
    }

    @Test("the sync that reaches the failure limit gives the thread up; its left-behind versions are emitted")
    func givenUpAtLimit() {
        let old = version("2026-12-01T09:00:00Z")
        let first = now.addingTimeInterval(-600)
        var ledger = ledger(["1": .init(since: first, failures: 2, superseded: [old])])
        let v2 = version("2026-12-01T10:00:00Z")
        var entry = ledger.open(thread: "1", listed: [v2.updatedAt], failedNow: true)
        #expect(entry.failures == 3)
        #expect(ledger.retry(v2, failed: true, in: &entry) == .giveUp)
        #expect(ledger.settle(entry) == [old])
        #expect(ledger.records.isEmpty)
        #expect(ledger.failedThreads == 0)
    }

    @Test("a thread failing for longer than the age limit is given up before the count is reached")
    func givenUpByAge() {
        let first = now.addingTimeInterval(-6 * 3600)
        var ledger = ledger(["1": .init(since: first, failures: 1)])
        let v = version("2026-12-01T10:00:00Z")
        var entry = ledger.open(thread: "1", listed: [v.updatedAt], failedNow: true)
        #expect(ledger.retry(v, failed: true, in: &entry) == .giveUp)
    }

    @Test("a version left unasked (the sync stopped) is kept without counting a failure or starting the age")
    func unaskedIsKeptUncounted() {
        var ledger = ledger(["1": .init(since: now.addingTimeInterval(-100), failures: 0)])
        let v = version("2026-12-01T10:00:00Z")
        var entry = ledger.open(thread: "1", listed: [v.updatedAt], failedNow: false)
        #expect(ledger.retry(v, failed: false, in: &entry) == .keep)
        #expect(ledger.settle(entry).isEmpty)
        #expect(ledger.failedThreads == 0)
        #expect(ledger.records["1"] == .init(since: now, failures: 0, superseded: [v]))
    }

    @Test("a kept version listed again is not kept twice; one GitHub no longer lists stays kept")
    func relistedVersionNotDuplicated() {
        let gone = version("2026-12-01T09:00:00Z")
        let relisted = version("2026-12-01T10:00:00Z")
        var ledger = ledger(["1": .init(since: now, failures: 1, superseded: [gone, relisted])])
        var entry = ledger.open(thread: "1", listed: [relisted.updatedAt], failedNow: true)
        #expect(ledger.retry(relisted, failed: true, in: &entry) == .keep)
        #expect(ledger.settle(entry).isEmpty)
        #expect(ledger.records["1"]?.superseded == [gone, relisted])
        #expect(ledger.records["1"]?.failures == 2)
    }

    @Test("threads not reached wait; one listed again but not fetched emits what it left behind")
    func finishSettlesOrKeeps() {
        let left = version("2026-12-01T09:00:00Z")
        let listedAgain = version("2026-12-01T09:30:00Z")
        var ledger = ledger([
            "1": .init(since: now, failures: 1, superseded: [left, listedAgain]),
            "2": .init(since: now, failures: 1, superseded: [left]),
        ])
        let settled = ledger.finish(
            listingComplete: true, listedThreads: ["1"], listedIds: ["1:\(listedAgain.updatedAt)"])
        #expect(settled.map(\.thread) == ["1"])
        #expect(settled.map(\.version) == [left])
        #expect(ledger.records == ["2": .init(since: now, failures: 1, superseded: [left])])
    }

    @Test("what finish settles comes in thread order, so a retried sync emits it in the same order")
    func finishSettlesInThreadOrder() {
        let left = version("2026-12-01T09:00:00Z")
        let threads = (10..<30).map(String.init)
        var ledger = ledger(
            Dictionary(uniqueKeysWithValues: threads.map { ($0, .init(since: now, failures: 1, superseded: [left])) }))
        let settled = ledger.finish(listingComplete: true, listedThreads: Set(threads), listedIds: [])
        #expect(settled.map(\.thread) == threads)
    }

    @Test("an incomplete listing settles nothing: every record waits")
    func incompleteListingKeepsAll() {
        let left = version("2026-12-01T09:00:00Z")
        var ledger = ledger(["1": .init(since: now, failures: 1, superseded: [left])])
        #expect(ledger.finish(listingComplete: false, listedThreads: ["1"], listedIds: []).isEmpty)
        #expect(ledger.records.count == 1)
    }

    @Test("records stored under the old `{thread}:{updated_at}` keys merge per thread")
    func oldKeysMerge() {
        let a = version("2026-12-01T09:00:00Z")
        let b = version("2026-12-01T10:00:00Z")
        let early = now.addingTimeInterval(-500)
        var ledger = ledger([
            "1:\(a.updatedAt)": .init(since: early, failures: 2, superseded: [a]),
            "1:\(b.updatedAt)": .init(since: now, failures: 1, superseded: [b]),
        ])
        _ = ledger.finish(listingComplete: false, listedThreads: [], listedIds: [])
        let merged = ledger.records["1"]
        #expect(merged?.since == early)
        #expect(merged?.failures == 2)
        #expect(Set(merged?.superseded ?? []) == [a, b])
    }
}
