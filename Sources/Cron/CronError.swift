/// Why a cron expression was rejected: which field, what was wrong with it, and how to write it instead.
///
/// Schedules are typed by people into `accounts add --schedule`; an error that names the field and the fix saves
/// them a trip to a cron manual.
public struct CronError: Error, CustomStringConvertible, Sendable, Hashable {
    private enum Code: Hashable, Sendable {
        case empty
        case fieldCount
        case unknownMacro
        case badField
    }

    private let code: Code
    /// The field the problem is in (`minute`, `day-of-month`, …), or nil when the whole expression is at fault.
    public let field: String?
    /// What went wrong, naming the offending text.
    public let message: String
    /// What to write instead.
    public let fix: String

    public var description: String { "\(message); \(fix)" }

    private init(_ code: Code, field: String?, message: String, fix: String) {
        self.code = code
        self.field = field
        self.message = message
        self.fix = fix
    }

    static func empty() -> CronError {
        CronError(
            .empty, field: nil, message: "cron expression is empty",
            fix: "write five fields such as '*/5 * * * *' (minute hour day-of-month month day-of-week)")
    }

    static func fieldCount(_ text: String, count: Int) -> CronError {
        CronError(
            .fieldCount, field: nil, message: "cron expression '\(text)' has \(count) field\(count == 1 ? "" : "s")",
            fix: "write 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading seconds field, "
                + "e.g. '*/5 * * * *' or '*/2 * * * * *'")
    }

    static func unknownMacro(_ text: String) -> CronError {
        CronError(
            .unknownMacro, field: nil, message: "unknown cron macro '\(text)'",
            fix: "use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or five fields")
    }

    static func badField(_ field: CronField, token: String, problem: String, fix: String? = nil) -> CronError {
        CronError(
            .badField, field: field.name, message: "\(field.name) field '\(token)': \(problem)",
            fix: fix
                ?? "use values \(field.rangeText)\(field.namesHint), '*', lists (a,b), ranges (a-b) and steps "
                + "(*/n, a-b/n)")
    }
}
