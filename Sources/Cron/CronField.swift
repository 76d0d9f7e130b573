/// One of the six positions of a cron expression, with its bounds and the names it accepts.
struct CronField: Sendable {
    let name: String
    let min: Int
    let max: Int
    /// Upper-case names whose index + `min` is the value (JAN = 1, SUN = 0).
    let names: [String]
    /// Day-of-week accepts 7 for Sunday, as most crons do.
    let sevenIsSunday: Bool

    static let second = CronField(name: "second", min: 0, max: 59, names: [], sevenIsSunday: false)
    static let minute = CronField(name: "minute", min: 0, max: 59, names: [], sevenIsSunday: false)
    static let hour = CronField(name: "hour", min: 0, max: 23, names: [], sevenIsSunday: false)
    static let dayOfMonth = CronField(name: "day-of-month", min: 1, max: 31, names: [], sevenIsSunday: false)
    static let month = CronField(
        name: "month", min: 1, max: 12,
        names: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
        sevenIsSunday: false)
    static let dayOfWeek = CronField(
        name: "day-of-week", min: 0, max: 6, names: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        sevenIsSunday: true)

    /// The largest number the field accepts as written (7 for day-of-week).
    private var upper: Int { sevenIsSunday ? 7 : max }

    var rangeText: String { "\(min)-\(upper)" }

    var namesHint: String {
        guard let first = names.first, let last = names.last else { return "" }
        return " or names \(first)-\(last)"
    }

    /// Parses the field's text into a bitset (bit n = value n allowed).
    func parse(_ text: String) throws(CronError) -> UInt64 {
        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            bits |= try parseItem(String(item), whole: text)
        }
        return bits
    }

    private func parseItem(_ item: String, whole: String) throws(CronError) -> UInt64 {
        guard !item.isEmpty else {
            throw .badField(self, token: whole, problem: "empty list element", fix: "remove the extra comma")
        }
        let parts = item.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else {
            throw .badField(self, token: item, problem: "more than one '/'", fix: "write a single step, e.g. */5")
        }
        var step = 1
        if parts.count == 2 {
            guard let value = Int(parts[1]) else {
                throw .badField(
                    self, token: item, problem: "step '\(parts[1])' is not a number",
                    fix: "write the step as a positive number, e.g. */5")
            }
            guard value > 0 else {
                throw .badField(self, token: item, problem: "step must be at least 1", fix: "write e.g. */5")
            }
            // A step past the field's span selects only the range's first value, as in Vixie cron; clamping
            // also keeps a huge step (e.g. */9223372036854775807) from overflowing below.
            step = Swift.min(value, upper - min + 1)
        }
        let rangeText = String(parts[0])
        let low: Int
        let high: Int
        if rangeText == "*" || rangeText == "?" {
            low = min
            high = max
        } else {
            let bounds = rangeText.split(separator: "-", omittingEmptySubsequences: false)
            switch bounds.count {
            case 1:
                low = try value(String(bounds[0]), token: item)
                // `a/n` means from a to the end of the field, as Vixie cron and cronie read it.
                high = parts.count == 2 ? upper : low
            case 2:
                low = try value(String(bounds[0]), token: item)
                high = try value(String(bounds[1]), token: item)
                guard low <= high else {
                    throw .badField(
                        self, token: item, problem: "range start \(low) is after its end \(high)",
                        fix:
                            "write ranges low-high; to wrap around, list two ranges, e.g. "
                            + "\(low)-\(upper),\(min)-\(high)"
                    )
                }
            default:
                throw .badField(self, token: item, problem: "more than one '-'", fix: "write a range as low-high")
            }
        }
        var bits: UInt64 = 0
        var value = low
        while value <= high {
            bits |= 1 << UInt64(sevenIsSunday && value == 7 ? 0 : value)
            value += step
        }
        return bits
    }

    private func value(_ text: String, token: String) throws(CronError) -> Int {
        if let number = Int(text) {
            guard number >= min, number <= upper else {
                throw .badField(
                    self, token: token, problem: "value \(number) out of range \(min)-\(upper)",
                    fix: "use a value from \(min) to \(upper)\(namesHint)")
            }
            return number
        }
        if let index = names.firstIndex(of: text.uppercased()) {
            return index + min
        }
        if text.isEmpty {
            throw .badField(self, token: token, problem: "missing value", fix: "write a value on both sides of '-'")
        }
        throw .badField(self, token: token, problem: "'\(text)' is not a number\(names.isEmpty ? "" : " or a name")")
    }
}
