import SyncModel
import Testing

@Suite struct BackoffTests {
    @Test("the wait doubles from initial after each failure and stops at the maximum")
    func doublesAndCaps() {
        let backoff = Backoff(initial: .milliseconds(500), maximum: .seconds(10))
        let waits = (0...8).map { backoff.delay(afterFailures: $0) }
        #expect(
            waits == [
                .milliseconds(500), .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8),
                .seconds(10),
                .seconds(10), .seconds(10),
            ])
    }

    @Test("any number of failures, however large, gives the maximum without overflowing")
    func hugeCountsStayAtTheMaximum() {
        let backoff = Backoff(initial: .seconds(60), maximum: .seconds(6 * 3600))
        for failures in [20, 63, 64, 1_000, Int.max] {
            #expect(backoff.delay(afterFailures: failures) == .seconds(6 * 3600))
        }
    }

    @Test("the caller's jitter scales the capped wait")
    func jitterScalesTheCappedWait() {
        let backoff = Backoff(initial: .seconds(1), maximum: .seconds(4))
        #expect(backoff.delay(afterFailures: 2, scaledBy: 0.5) == .seconds(1))
        #expect(backoff.delay(afterFailures: 9, scaledBy: 1.2) == .milliseconds(4_800))
    }
}
