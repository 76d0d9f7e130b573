import Testing

@testable import ExternalIntegrations

/// The reader thread's timing rules, without a clock or a process: what an operator sees as "killed at the
/// timeout", "cancelled at once" and "helpers do not keep a finished run alive".
@Suite("Supervision schedule")
struct SupervisionScheduleTests {
    let start = ContinuousClock().now

    @Test("a poll waits at most 100 ms, and never past the timeout")
    func pollWaits() {
        var schedule = SupervisionSchedule(start: start, timeout: .seconds(5))
        #expect(
            schedule.next(cancelled: false, now: start, childExited: false) == .poll(milliseconds: 100, snapshot: true))
        let nearEnd = start + .milliseconds(4_970)
        #expect(
            schedule.next(cancelled: false, now: nearEnd, childExited: false) == .poll(milliseconds: 30, snapshot: true)
        )
        let almost = start + .seconds(5) - .microseconds(10)
        #expect(
            schedule.next(cancelled: false, now: almost, childExited: false) == .poll(milliseconds: 1, snapshot: false))
    }

    @Test("past the timeout the run stops as timed out; a cancellation stops it before anything else")
    func stops() {
        var schedule = SupervisionSchedule(start: start, timeout: .seconds(2))
        #expect(
            schedule.next(cancelled: false, now: start + .seconds(2), childExited: false)
                == .stop(.timedOut(.seconds(2))))
        #expect(schedule.next(cancelled: true, now: start + .seconds(3), childExited: true) == .stop(.cancelled))
        #expect(schedule.next(cancelled: true, now: start, childExited: false) == .stop(.cancelled))
    }

    @Test("descendants are snapshotted every 100 ms while the child runs, and not after it exited")
    func snapshots() {
        var schedule = SupervisionSchedule(start: start, timeout: .seconds(60))
        #expect(
            schedule.next(cancelled: false, now: start, childExited: false) == .poll(milliseconds: 100, snapshot: true))
        #expect(
            schedule.next(cancelled: false, now: start + .milliseconds(50), childExited: false)
                == .poll(milliseconds: 100, snapshot: false))
        #expect(
            schedule.next(cancelled: false, now: start + .milliseconds(100), childExited: false)
                == .poll(milliseconds: 100, snapshot: true))
        #expect(
            schedule.next(cancelled: false, now: start + .milliseconds(250), childExited: true)
                == .poll(milliseconds: 100, snapshot: false))
    }

    @Test(
        "a second after the child exited, what it started no longer keeps the run alive; exit is asked only until seen")
    func exitedChild() {
        var schedule = SupervisionSchedule(start: start, timeout: .seconds(60))
        var asked = 0
        func exited() -> Bool {
            asked += 1
            return true
        }
        let exitSeen = start + .seconds(1)
        #expect(schedule.next(cancelled: false, now: exitSeen, childExited: exited()) != .stop(nil))
        #expect(schedule.exitedAt == exitSeen)
        #expect(schedule.next(cancelled: false, now: exitSeen + .seconds(1), childExited: exited()) != .stop(nil))
        #expect(
            schedule.next(cancelled: false, now: exitSeen + .milliseconds(1_001), childExited: exited()) == .stop(nil))
        #expect(asked == 1)
    }
}
