import Foundation
import Testing

@testable import GitHub

/// A broken or hostile response must not park an account for years, nor crash a sync with a date the
/// formatter cannot write.
@Suite("Header bounds")
struct HeaderLimitTests {
    let now = Date(timeIntervalSince1970: 1_796_097_900)

    @Test("x-ratelimit-reset that is not finite is ignored; one far away is cut to the longest wait")
    func resetBounds() {
        #expect(RateLimitInfo.parseReset("inf", now: now) == nil)
        #expect(RateLimitInfo.parseReset("nan", now: now) == nil)
        #expect(RateLimitInfo.parseReset("1e300", now: now) == now.addingTimeInterval(HeaderLimits.longestWait))
        let soon = now.addingTimeInterval(600)
        #expect(RateLimitInfo.parseReset(String(Int(soon.timeIntervalSince1970)), now: now) == soon)
    }

    @Test("retry-after is finite, non-negative and bounded")
    func retryAfterBounds() {
        #expect(HeaderLimits.seconds("30") == 30)
        #expect(HeaderLimits.seconds("-5") == 0)
        #expect(HeaderLimits.seconds("9e18") == HeaderLimits.longestWait)
        #expect(HeaderLimits.seconds("inf") == nil)
        #expect(HeaderLimits.seconds("soon") == nil)
    }
}
