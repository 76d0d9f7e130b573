import Foundation
import SyncModel

/// `Link: <url>; rel="next", <url>; rel="last"` → `["next": url, "last": url]`.
///
/// Pagination follows `rel="next"` rather than guessing from a short page, which misses the last page when it
/// happens to be full and re-reads when GitHub shortens pages.
enum LinkHeader {
    static func parse(_ value: String) -> [String: String] {
        var links: [String: String] = [:]
        for part in splitOutsideBrackets(value) {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("<"), let close = trimmed.firstIndex(of: ">") else { continue }
            let url = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
            for parameter in trimmed[trimmed.index(after: close)...].split(separator: ";") {
                let pair = parameter.split(separator: "=", maxSplits: 1).map {
                    $0.trimmingCharacters(in: .whitespaces)
                }
                guard pair.count == 2, pair[0].lowercased() == "rel" else { continue }
                let rels = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                for rel in rels.split(separator: " ") where links[String(rel)] == nil {
                    links[String(rel)] = url
                }
            }
        }
        return links
    }

    /// Splits on commas that are not inside `<…>` (URLs may contain commas).
    private static func splitOutsideBrackets(_ value: String) -> [Substring] {
        var parts: [Substring] = []
        var depth = 0
        var start = value.startIndex
        for index in value.indices {
            switch value[index] {
            case "<": depth += 1
            case ">": depth = max(0, depth - 1)
            case "," where depth == 0:
                parts.append(value[start..<index])
                start = value.index(after: index)
            default: break
            }
        }
        parts.append(value[start...])
        return parts
    }
}

/// The `x-ratelimit-*` headers of one response.
struct RateLimitInfo: Sendable, Hashable {
    var limit: Int?
    var remaining: Int?
    var used: Int?
    var reset: Date?
    var resource: String?

    /// Reads the headers through `value(name)`, which returns a header's text. Header values arrive as text on
    /// the wire, but recorded fixtures also carry numbers; callers turn those into their decimal text first.
    init(header value: (String) -> String?) {
        limit = value("x-ratelimit-limit").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        remaining = value("x-ratelimit-remaining").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        used = value("x-ratelimit-used").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        resource = value("x-ratelimit-resource")
        reset = value("x-ratelimit-reset").flatMap { RateLimitInfo.parseReset($0) }
    }

    init(limit: Int? = nil, remaining: Int? = nil, used: Int? = nil, reset: Date? = nil, resource: String? = nil) {
        self.limit = limit
        self.remaining = remaining
        self.used = used
        self.reset = reset
        self.resource = resource
    }

    /// `x-ratelimit-reset` is epoch seconds. Values too large to be seconds (recorded fixtures normalise it to a
    /// millisecond-looking constant) are read as milliseconds rather than as a date thousands of years away.
    /// A reset later than ``HeaderLimits/longestWait`` from now is read as that: GitHub's windows are an hour,
    /// and a garbled header must not park an account for years (or reach a date the formatter cannot write).
    static func parseReset(_ text: String, now: Date = Date()) -> Date? {
        guard let number = Double(text.trimmingCharacters(in: .whitespaces)), number.isFinite, number >= 0 else {
            return nil
        }
        let seconds = number > 100_000_000_000 ? number / 1000 : number
        return min(Date(timeIntervalSince1970: seconds), now.addingTimeInterval(HeaderLimits.longestWait))
    }
}

/// Bounds on what response headers may ask of us. GitHub's own values are far below them; anything above is a
/// broken or hostile response, and obeying it would stop an account's syncs indefinitely.
enum HeaderLimits {
    /// The longest wait a `retry-after` or `x-ratelimit-reset` may impose (GitHub's rate-limit window is 1 h).
    static let longestWait: TimeInterval = 2 * 3600
    /// The longest `X-Poll-Interval` honoured (GitHub sends 60 s).
    static let longestPollInterval = 3600

    /// Seconds from a `retry-after` value, finite and within bounds.
    static func seconds(_ text: String) -> Double? {
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else { return nil }
        return min(max(0, value), longestWait)
    }
}

/// HTTP dates (`Tue, 10 Oct 2017 16:00:00 GMT`, RFC 9110 IMF-fixdate), for Last-Modified and Retry-After.
enum HTTPDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    static func parse(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        guard parts.count == 5 || parts.count == 6 else { return nil }
        // IMF-fixdate: weekday, DD Mon YYYY HH:MM:SS GMT
        let fields = parts.count == 6 ? Array(parts[1...]) : Array(parts)
        guard fields.count == 5, let dayOfMonth = Int(fields[0]),
            let month = months.firstIndex(of: fields[1].lowercased()), let year = Int(fields[2])
        else { return nil }
        let time = fields[3].split(separator: ":").compactMap { Int($0) }
        guard time.count == 3, fields[4].uppercased() == "GMT" || fields[4].uppercased() == "UTC" else { return nil }
        var components = DateComponents()
        components.calendar = Calendar(identifier: .gregorian)
        components.timeZone = TimeZone(identifier: "UTC")
        components.year = year
        components.month = month + 1
        components.day = dayOfMonth
        components.hour = time[0]
        components.minute = time[1]
        components.second = time[2]
        return components.date
    }

    static func format(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.weekday, .day, .month, .year, .hour, .minute, .second], from: date)
        let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        return "\(weekdays[(c.weekday ?? 1) - 1]), \(two(c.day)) \(monthNames[(c.month ?? 1) - 1]) "
            + "\(c.year ?? 1970) \(two(c.hour)):\(two(c.minute)):\(two(c.second)) GMT"
    }
}

/// GitHub's query-string dates: ISO 8601 in UTC, whole seconds.
enum QueryDate {
    static func format(_ date: Date) -> String {
        WireFormat.formatDate(Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)))
    }
}
