import Foundation

/// SplitMix64: tiny, fast and good enough to make a world that looks random but is the same for the same seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { self.state = seed }

    /// A generator for one thing in the world, so that the n-th item of a user never depends on how many other
    /// users were generated first.
    init(_ parts: UInt64...) {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for part in parts {
            state = Self.mix(state ^ part &+ 0x632B_E59B_D9B4_E019)
        }
        self.state = state
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func pick<T>(_ items: [T]) -> T { items[Int(next() % UInt64(items.count))] }

    /// Picks a key by weight; weights need not sum to anything in particular.
    mutating func weighted<T>(_ table: [(T, Int)]) -> T {
        let total = table.reduce(0) { $0 + $1.1 }
        var roll = Int(next() % UInt64(total))
        for (value, weight) in table {
            if roll < weight { return value }
            roll -= weight
        }
        return table[table.count - 1].0
    }
}

/// GitHub's timestamps are whole seconds in UTC; keeping them as epoch seconds avoids Foundation formatters on the
/// hot path and makes ids such as `github:notification:{id}:{updated_at}` exact.
enum Timestamp {
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970.rounded(.down)) }

    static func seconds(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970.rounded(.down)) }

    static func date(_ seconds: Int64) -> Date { Date(timeIntervalSince1970: TimeInterval(seconds)) }

    /// Civil date from days since 1970-01-01 (Howard Hinnant's well-known algorithm, written out here).
    private static func civil(_ seconds: Int64) -> (
        y: Int64, m: Int64, d: Int64, hh: Int64, mm: Int64, ss: Int64, wd: Int64
    ) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secs = seconds - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        let weekday = ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday; 0 = Sunday
        return (y, m, d, secs / 3_600, (secs % 3_600) / 60, secs % 60, weekday)
    }

    private static func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }

    /// `2026-12-01T04:05:06Z`, exactly how GitHub writes `updated_at`.
    static func rfc3339(_ seconds: Int64) -> String {
        let c = civil(seconds)
        return "\(c.y)-\(two(c.m))-\(two(c.d))T\(two(c.hh)):\(two(c.mm)):\(two(c.ss))Z"
    }

    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `Tue, 10 Oct 2017 16:00:00 GMT`, for `Last-Modified`.
    static func httpDate(_ seconds: Int64) -> String {
        let c = civil(seconds)
        return "\(weekdays[Int(c.wd)]), \(two(c.d)) \(months[Int(c.m - 1)]) \(c.y) "
            + "\(two(c.hh)):\(two(c.mm)):\(two(c.ss)) GMT"
    }

    private static func daysFromCivil(y: Int64, m: Int64, d: Int64) -> Int64 {
        let y = m <= 2 ? y - 1 : y
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func parseHTTPDate(_ text: String) -> Int64? {
        // "Tue, 10 Oct 2017 16:00:00 GMT"
        let parts = text.split(separator: " ")
        guard parts.count == 6, let day = Int64(parts[1]), let year = Int64(parts[3]),
            let monthIndex = months.firstIndex(of: String(parts[2]))
        else { return nil }
        let time = parts[4].split(separator: ":").compactMap { Int64($0) }
        guard time.count == 3 else { return nil }
        let days = daysFromCivil(y: year, m: Int64(monthIndex + 1), d: day)
        return days * 86_400 + time[0] * 3_600 + time[1] * 60 + time[2]
    }

    /// Accepts what clients send for `since`/`before`: `2026-12-01T04:05:06Z`, with or without fractional
    /// seconds, or with an offset.
    static func parseRFC3339(_ text: String) -> Int64? {
        if let date = try? Date(text, strategy: .iso8601) { return seconds(date) }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
            return seconds(date)
        }
        return nil
    }
}

/// Splits a raw query string into decoded pairs; the last value of a repeated name wins.
func parseQuery(_ query: String?) -> [String: String] {
    guard let query, !query.isEmpty else { return [:] }
    var result: [String: String] = [:]
    for pair in query.split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let name = decodeComponent(parts[0])
        let value = parts.count > 1 ? decodeComponent(parts[1]) : ""
        result[name] = value
    }
    return result
}

func decodeComponent(_ text: Substring) -> String {
    let spaced = text.replacingOccurrences(of: "+", with: " ")
    return spaced.removingPercentEncoding ?? spaced
}

func encodeComponent(_ text: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~:")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
}
