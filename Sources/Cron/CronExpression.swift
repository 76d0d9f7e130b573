public import Foundation

/// A parsed cron schedule that answers "when is the next fire after this instant?" in UTC.
///
/// Accepts the five standard fields (minute hour day-of-month month day-of-week) with lists, ranges, steps and
/// month/day names, `7` for Sunday, the `@hourly`…`@yearly` macros, and an optional leading seconds field (six
/// fields, as node-cron and Spring accept) so demos and tests can tick every few seconds.
///
/// Day matching follows Vixie cron: when both day-of-month and day-of-week are restricted (neither starts with
/// `*`), a day matches if *either* matches — `0 0 1 * MON` fires on the 1st and on every Monday.
///
/// Each field is a bitset, and ``next(after:)`` skips whole months, days, hours and minutes that cannot match, so
/// one call costs a few dozen steps, not a scan over every minute.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The text as given, for logs and error messages.
    public let source: String
    /// Whether the expression has a seconds field (6 fields); otherwise it fires at second 0.
    public let hasSeconds: Bool

    let seconds: UInt64
    let minutes: UInt64
    let hours: UInt64
    let daysOfMonth: UInt64
    let months: UInt64
    let daysOfWeek: UInt64
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool

    /// How far ahead ``next(after:)`` looks before deciding the expression never fires (e.g. `0 0 30 2 *`).
    /// Eight years so that a leap day across a skipped leap year (2096 → 2104) is still found.
    public static let searchHorizonYears = 8

    /// Parses an expression.
    /// - Throws: ``CronError`` naming the field that is wrong and how to write it.
    public init(_ text: String) throws(CronError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw .empty() }
        source = trimmed
        var expanded = trimmed
        if trimmed.hasPrefix("@") {
            switch trimmed.lowercased() {
            case "@yearly", "@annually": expanded = "0 0 1 1 *"
            case "@monthly": expanded = "0 0 1 * *"
            case "@weekly": expanded = "0 0 * * 0"
            case "@daily", "@midnight": expanded = "0 0 * * *"
            case "@hourly": expanded = "0 * * * *"
            default: throw .unknownMacro(trimmed)
            }
        }
        var fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        switch fields.count {
        case 5:
            hasSeconds = false
            fields.insert("0", at: 0)
        case 6:
            hasSeconds = true
        default:
            throw .fieldCount(trimmed, count: fields.count)
        }
        seconds = try CronField.second.parse(fields[0])
        minutes = try CronField.minute.parse(fields[1])
        hours = try CronField.hour.parse(fields[2])
        daysOfMonth = try CronField.dayOfMonth.parse(fields[3])
        months = try CronField.month.parse(fields[4])
        daysOfWeek = try CronField.dayOfWeek.parse(fields[5])
        dayOfMonthRestricted = !(fields[3].hasPrefix("*") || fields[3].hasPrefix("?"))
        dayOfWeekRestricted = !(fields[5].hasPrefix("*") || fields[5].hasPrefix("?"))
    }

    public var description: String { source }

    /// The first instant strictly after `date` at which the expression fires, in UTC, or nil when it does not fire
    /// within ``searchHorizonYears`` (an impossible date such as February 30th).
    public func next(after date: Date) -> Date? {
        let after = Int64((date.timeIntervalSince1970).rounded(.down))
        return nextSecond(after: after).map { Date(timeIntervalSince1970: TimeInterval($0)) }
    }

    /// Whether the expression fires at this instant (to the second).
    public func matches(_ date: Date) -> Bool {
        let time = Int64(date.timeIntervalSince1970.rounded(.down))
        var civil = CivilTime(epochSeconds: time)
        return civil.second >= 0 && matchesDay(&civil) && has(months, civil.month) && has(hours, civil.hour)
            && has(minutes, civil.minute) && has(seconds, civil.second)
    }

    /// The latest matching second at or before `epochSeconds`, e.g. for `enqueue` to publish the very job (same
    /// id) a scheduler fires for that tick; nil when there is none within ``searchHorizonYears``.
    ///
    /// Searches backwards with a doubling window, since matching only knows how to go forwards.
    public func latestSecond(atOrBefore epochSeconds: Int64) -> Int64? {
        var window: Int64 = 1
        let horizon = Int64(Self.searchHorizonYears) * 366 * 86_400
        while window <= horizon {
            if var tick = nextSecond(after: epochSeconds - window), tick <= epochSeconds {
                while let next = nextSecond(after: tick), next <= epochSeconds { tick = next }
                return tick
            }
            window *= 2
        }
        return nil
    }

    /// ``next(after:)`` on whole seconds since the epoch, for callers that schedule millions of accounts.
    public func nextSecond(after epochSeconds: Int64) -> Int64? {
        var time = epochSeconds + 1
        var civil = CivilTime(epochSeconds: time)
        let lastYear = civil.year + Self.searchHorizonYears
        while civil.year <= lastYear {
            if !has(months, civil.month) {
                // Jump to the first day of the next allowed month (possibly next year).
                guard let month = nextBit(months, from: civil.month + 1, upTo: 12) else {
                    civil = CivilTime(year: civil.year + 1, month: 1, day: 1)
                    continue
                }
                civil = CivilTime(year: civil.year, month: month, day: 1)
                continue
            }
            if !matchesDay(&civil) {
                civil = civil.startOfNextDay()
                continue
            }
            if !has(hours, civil.hour) {
                guard let hour = nextBit(hours, from: civil.hour + 1, upTo: 23) else {
                    civil = civil.startOfNextDay()
                    continue
                }
                civil.hour = hour
                civil.minute = 0
                civil.second = 0
                continue
            }
            if !has(minutes, civil.minute) {
                guard let minute = nextBit(minutes, from: civil.minute + 1, upTo: 59) else {
                    civil = civil.startOfNextHour()
                    continue
                }
                civil.minute = minute
                civil.second = 0
                continue
            }
            if !has(seconds, civil.second) {
                guard let second = nextBit(seconds, from: civil.second + 1, upTo: 59) else {
                    civil = civil.startOfNextMinute()
                    continue
                }
                civil.second = second
                continue
            }
            time = civil.epochSeconds
            return time
        }
        return nil
    }

    private func matchesDay(_ civil: inout CivilTime) -> Bool {
        let domMatches = has(daysOfMonth, civil.day)
        let dowMatches = has(daysOfWeek, civil.weekday)
        if dayOfMonthRestricted && dayOfWeekRestricted { return domMatches || dowMatches }
        return domMatches && dowMatches
    }

    @inline(__always)
    private func has(_ bits: UInt64, _ value: Int) -> Bool { bits & (1 << UInt64(value)) != 0 }

    /// The smallest set bit in `from...upTo`, if any.
    @inline(__always)
    private func nextBit(_ bits: UInt64, from: Int, upTo: Int) -> Int? {
        guard from <= upTo else { return nil }
        let masked = bits >> UInt64(from)
        guard masked != 0 else { return nil }
        let value = from + masked.trailingZeroBitCount
        return value <= upTo ? value : nil
    }
}

/// A UTC calendar time with the days-from-civil arithmetic done by hand: no `Calendar`, no time zones, and fast
/// enough to compute a million next fires at load.
struct CivilTime {
    var year: Int
    var month: Int
    var day: Int
    var hour: Int
    var minute: Int
    var second: Int

    init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    init(epochSeconds: Int64) {
        let seconds = Int(epochSeconds)
        var days = seconds / 86_400
        var rest = seconds % 86_400
        if rest < 0 {
            rest += 86_400
            days -= 1
        }
        hour = rest / 3600
        minute = rest % 3600 / 60
        second = rest % 60
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = doy - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    }

    /// Days since 1970-01-01 (Hinnant's days_from_civil).
    var daysSinceEpoch: Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    var epochSeconds: Int64 { Int64(daysSinceEpoch) * 86_400 + Int64(hour * 3600 + minute * 60 + second) }

    /// 0 = Sunday … 6 = Saturday (1970-01-01 was a Thursday).
    var weekday: Int {
        let value = (daysSinceEpoch + 4) % 7
        return value < 0 ? value + 7 : value
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    func startOfNextDay() -> CivilTime {
        if day < CivilTime.daysIn(month: month, year: year) { return CivilTime(year: year, month: month, day: day + 1) }
        if month < 12 { return CivilTime(year: year, month: month + 1, day: 1) }
        return CivilTime(year: year + 1, month: 1, day: 1)
    }

    func startOfNextHour() -> CivilTime {
        if hour < 23 { return CivilTime(year: year, month: month, day: day, hour: hour + 1) }
        return startOfNextDay()
    }

    func startOfNextMinute() -> CivilTime {
        if minute < 59 { return CivilTime(year: year, month: month, day: day, hour: hour, minute: minute + 1) }
        return startOfNextHour()
    }
}
