import Cron
import Foundation
import Testing

/// Parses "2026-12-01T04:05:00Z" for readable expectations.
private func utc(_ text: String) -> Date {
    try! Date(text, strategy: .iso8601)
}

private func fires(_ expression: String, after start: String, count: Int) throws -> [String] {
    let cron = try CronExpression(expression)
    var date = utc(start)
    var result: [String] = []
    for _ in 0..<count {
        guard let next = cron.next(after: date) else { break }
        result.append(next.formatted(.iso8601))
        date = next
    }
    return result
}

@Suite("Cron expressions")
struct CronExpressionTests {
    @Test func everyFiveMinutes() throws {
        #expect(
            try fires("*/5 * * * *", after: "2026-12-01T04:03:10Z", count: 3) == [
                "2026-12-01T04:05:00Z", "2026-12-01T04:10:00Z", "2026-12-01T04:15:00Z",
            ])
        // Strictly after: an instant on a tick gives the following tick.
        #expect(try fires("*/5 * * * *", after: "2026-12-01T04:05:00Z", count: 1) == ["2026-12-01T04:10:00Z"])
    }

    @Test func rangesListsAndSteps() throws {
        #expect(
            try fires("1-30/10 9,17 * * *", after: "2026-12-01T00:00:00Z", count: 7) == [
                "2026-12-01T09:01:00Z", "2026-12-01T09:11:00Z", "2026-12-01T09:21:00Z",
                "2026-12-01T17:01:00Z", "2026-12-01T17:11:00Z", "2026-12-01T17:21:00Z",
                "2026-12-02T09:01:00Z",
            ])
        // `a/n` runs from a to the end of the field.
        #expect(
            try fires("50/5 0 * * *", after: "2026-12-01T00:00:00Z", count: 3) == [
                "2026-12-01T00:50:00Z", "2026-12-01T00:55:00Z", "2026-12-02T00:50:00Z",
            ])
    }

    @Test("a step larger than the field selects only the first value and never overflows")
    func hugeSteps() throws {
        // A record with such a schedule once crashed the scheduler (Int overflow while expanding the step).
        #expect(
            try fires("0 0 */9223372036854775807 * *", after: "2026-12-01T00:00:00Z", count: 2) == [
                "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z",
            ])
        #expect(
            try fires("1/9223372036854775807 * * * *", after: "2026-12-01T00:00:00Z", count: 1) == [
                "2026-12-01T00:01:00Z"
            ])
        #expect(try fires("*/100 0 1 1 *", after: "2026-12-01T00:00:00Z", count: 1) == ["2027-01-01T00:00:00Z"])
    }

    @Test func monthAndDayNamesAreCaseInsensitive() throws {
        // 2026-12-01 is a Tuesday.
        #expect(
            try fires("0 12 * jan,Jul mon-WED", after: "2026-12-01T00:00:00Z", count: 4) == [
                "2027-01-04T12:00:00Z", "2027-01-05T12:00:00Z", "2027-01-06T12:00:00Z", "2027-01-11T12:00:00Z",
            ])
        // 7 is Sunday too.
        #expect(try fires("0 0 * * 7", after: "2026-12-01T00:00:00Z", count: 1) == ["2026-12-06T00:00:00Z"])
        #expect(
            try fires("0 0 * * 5-7", after: "2026-12-04T01:00:00Z", count: 3) == [
                "2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z", "2026-12-11T00:00:00Z",
            ])
    }

    @Test func macros() throws {
        let start = "2026-12-01T04:05:00Z"
        #expect(try fires("@hourly", after: start, count: 1) == ["2026-12-01T05:00:00Z"])
        #expect(try fires("@daily", after: start, count: 1) == ["2026-12-02T00:00:00Z"])
        #expect(try fires("@midnight", after: start, count: 1) == ["2026-12-02T00:00:00Z"])
        #expect(try fires("@weekly", after: start, count: 1) == ["2026-12-06T00:00:00Z"])
        #expect(try fires("@monthly", after: start, count: 1) == ["2027-01-01T00:00:00Z"])
        #expect(try fires("@yearly", after: start, count: 1) == ["2027-01-01T00:00:00Z"])
        #expect(try fires("@ANNUALLY", after: start, count: 1) == ["2027-01-01T00:00:00Z"])
    }

    @Test func dayOfMonthOrDayOfWeekWhenBothRestricted() throws {
        // The 13th or any Friday (Vixie's OR rule).
        #expect(
            try fires("0 0 13 * FRI", after: "2026-12-01T00:00:00Z", count: 4) == [
                "2026-12-04T00:00:00Z", "2026-12-11T00:00:00Z", "2026-12-13T00:00:00Z", "2026-12-18T00:00:00Z",
            ])
        // With day-of-week unrestricted only day-of-month counts…
        #expect(try fires("0 0 13 * *", after: "2026-12-01T00:00:00Z", count: 1) == ["2026-12-13T00:00:00Z"])
        // …and a field starting with '*' (even */2) counts as unrestricted, so the two are ANDed.
        #expect(
            try fires("0 0 */2 * FRI", after: "2026-12-01T00:00:00Z", count: 2) == [
                "2026-12-11T00:00:00Z", "2026-12-25T00:00:00Z",
            ])
    }

    @Test func monthEndsAreSkippedNotClamped() throws {
        #expect(
            try fires("0 0 31 * *", after: "2026-12-31T12:00:00Z", count: 3) == [
                "2027-01-31T00:00:00Z", "2027-03-31T00:00:00Z", "2027-05-31T00:00:00Z",
            ])
        #expect(try fires("0 0 30 * *", after: "2027-01-30T00:00:00Z", count: 1) == ["2027-03-30T00:00:00Z"])
    }

    @Test func leapDays() throws {
        #expect(
            try fires("0 0 29 2 *", after: "2026-12-01T00:00:00Z", count: 2) == [
                "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z",
            ])
        // 2100 is not a leap year: the next leap day after 2096 is in 2104.
        #expect(try fires("0 0 29 2 *", after: "2096-03-01T00:00:00Z", count: 1) == ["2104-02-29T00:00:00Z"])
    }

    @Test func impossibleExpressionsGiveUp() throws {
        let clock = ContinuousClock()
        let started = clock.now
        #expect(try CronExpression("0 0 30 2 *").next(after: utc("2026-12-01T00:00:00Z")) == nil)
        #expect(try CronExpression("0 0 31 4,6,9,11 *").next(after: utc("2026-12-01T00:00:00Z")) == nil)
        #expect(clock.now - started < .seconds(1))
    }

    @Test func secondsField() throws {
        let cron = try CronExpression("*/2 * * * * *")
        #expect(cron.hasSeconds)
        #expect(
            try fires("*/2 * * * * *", after: "2026-12-01T04:05:58.500Z", count: 3) == [
                "2026-12-01T04:06:00Z", "2026-12-01T04:06:02Z", "2026-12-01T04:06:04Z",
            ])
        #expect(try fires("30 0 0 1 1 *", after: "2026-12-01T00:00:00Z", count: 1) == ["2027-01-01T00:00:30Z"])
        #expect(try CronExpression("*/5 * * * *").hasSeconds == false)
    }

    @Test func matchesAgreesWithNext() throws {
        let cron = try CronExpression("15,45 */3 1-7 * MON")
        var date = utc("2026-12-01T00:00:00Z")
        for _ in 0..<50 {
            let next = try #require(cron.next(after: date))
            #expect(cron.matches(next))
            #expect(!cron.matches(next.addingTimeInterval(60)) || cron.next(after: next) == next.addingTimeInterval(60))
            date = next
        }
    }

    @Test func manyNextCallsAreCheap() throws {
        let cron = try CronExpression("*/5 * * * *")
        let clock = ContinuousClock()
        let started = clock.now
        var time: Int64 = 1_796_000_000
        for _ in 0..<100_000 { time = cron.nextSecond(after: time)! }
        #expect(clock.now - started < .seconds(5))
    }

    @Test(
        arguments: [
            ("", nil, "empty"),
            ("* * * *", nil, "has 4 fields"),
            ("* * * * * * *", nil, "has 7 fields"),
            ("@reboot", nil, "unknown cron macro '@reboot'"),
            ("0 0 32 * *", "day-of-month", "day-of-month field '32': value 32 out of range 1-31"),
            ("60 * * * *", "minute", "minute field '60': value 60 out of range 0-59"),
            ("0 24 * * *", "hour", "hour field '24': value 24 out of range 0-23"),
            ("0 0 * 13 *", "month", "month field '13': value 13 out of range 1-12"),
            ("0 0 * * 8", "day-of-week", "day-of-week field '8': value 8 out of range 0-7"),
            ("0 0 * FOO *", "month", "month field 'FOO': 'FOO' is not a number or a name"),
            ("*/0 * * * *", "minute", "minute field '*/0': step must be at least 1"),
            ("*/x * * * *", "minute", "step 'x' is not a number"),
            ("30-10 * * * *", "minute", "range start 30 is after its end 10"),
            ("1,,2 * * * *", "minute", "empty list element"),
            ("60 * * * * *", "second", "second field '60': value 60 out of range 0-59"),
        ] as [(String, String?, String)])
    func badInputNamesTheFieldAndTheFix(expression: String, field: String?, message: String) {
        do {
            _ = try CronExpression(expression)
            Issue.record("'\(expression)' was accepted")
        } catch {
            #expect(error.field == field)
            #expect(error.description.contains(message), "\(error.description)")
            #expect(!error.fix.isEmpty)
        }
    }

    @Test func rangeErrorSuggestsWrapAround() {
        #expect(throws: CronError.self) { try CronExpression("0 22-2 * * *") }
        do {
            _ = try CronExpression("0 22-2 * * *")
        } catch {
            #expect(error.fix.contains("22-23,0-2"))
        }
    }
}
