public import Logging
import Synchronization

/// Keeps every log line a test's services write, with when it was written, so a test can assert what an operator
/// would read, what never appears in any line (tokens), and in which order things happened.
public final class CapturedLogs: Sendable {
    private let entries = Mutex<[(at: ContinuousClock.Instant, line: String)]>([])

    public init() {}

    /// Every line, in order: `level message key=value …` (metadata sorted by key).
    public var all: [String] { entries.withLock { $0.map(\.line) } }

    /// Whether any line contains `text`.
    public func contains(_ text: String) -> Bool { first(containing: text) != nil }

    /// When the first line containing `text` was written.
    public func first(containing text: String) -> ContinuousClock.Instant? {
        entries.withLock { $0.first { $0.line.contains(text) }?.at }
    }

    /// A logger whose lines (at `level` and above) are kept here.
    public func logger(_ label: String = "test", level: Logger.Level = .debug) -> Logger {
        Logger(label: label) { _ in Handler(sink: self, logLevel: level) }
    }

    /// A logger of every level, labelled `test`.
    public var logger: Logger { logger() }

    struct Handler: LogHandler {
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level

        init(sink: CapturedLogs, logLevel: Logger.Level) {
            self.sink = sink
            self.logLevel = logLevel
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
            let rendered = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let line = "\(event.level) \(event.message) \(rendered)"
            sink.entries.withLock { $0.append((ContinuousClock.now, line)) }
        }
    }
}
