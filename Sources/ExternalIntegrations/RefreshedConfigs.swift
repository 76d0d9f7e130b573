import Foundation
import Synchronization
import SyncModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The `account` messages a running CLI prints, taken as they arrive on stdout rather than after it exits.
///
/// A provider that rotates refresh tokens retires the old pair the moment the CLI refreshes, so a new config the
/// CLI printed is worth something before the run ends: its strings are redacted from every stderr line and reason
/// that follows (``redactor``), and it is handed to ``onRefresh`` at once, to be stored. The last one printed is
/// the run's refreshed config (``latest``).
///
/// Fed by ``observe(_:)`` on the runner's reader thread, which must not block: it parses only lines that mention
/// `"account"`, and hands configs on without waiting.
final class RefreshedConfigs: Sendable {
    /// Bytes of secret strings of refreshed configs the redactor keeps, newest configs first (the newest is always
    /// kept whole). About ten times as much in derived forms: a CLI that prints thousands of different tokens in one
    /// run cannot make the redactor grow with its output.
    static let secretBudget = 64 << 10

    private struct State {
        var redactor: SecretRedactor
        /// The refreshed configs' secrets the redactor holds, oldest first.
        var kept: [Set<String>] = []
        var latest: JSONValue?
    }

    private let base: [JSONValue]
    private let state: Mutex<State>
    private let onRefresh: @Sendable (JSONValue) -> Void

    /// - Parameters:
    ///   - secrets: the documents whose strings are redacted from the start (the account's config, the definition's).
    ///   - onRefresh: called on the reader thread with each refreshed config, in order; must not block.
    init(secrets: [JSONValue], onRefresh: @escaping @Sendable (JSONValue) -> Void = { _ in }) {
        base = secrets
        state = Mutex(State(redactor: SecretRedactor(documents: secrets)))
        self.onRefresh = onRefresh
    }

    /// Redacts the secrets of the run's config and of every refreshed config printed so far.
    var redactor: SecretRedactor { state.withLock { $0.redactor } }

    /// The config of the last `account` message printed so far.
    var latest: JSONValue? { state.withLock { $0.latest } }

    /// Takes one stdout line: an `account` message with a `config` object becomes the latest refreshed config.
    func observe(_ line: ArraySlice<UInt8>) {
        guard Self.mentionsAccount(line), let message = try? WireFormat.decode(JSONValue.self, from: line),
            message["type"]?.stringValue == "account", let config = message["data"]?["config"],
            config.objectValue != nil
        else { return }
        let secrets = SecretRedactor.secrets(in: config)
        state.withLock { state in
            state.latest = config
            guard !secrets.isSubset(of: state.redactor.secrets) else { return }
            state.kept.append(secrets)
            var bytes = state.kept.reduce(0) { $0 + $1.reduce(0) { $0 + $1.utf8.count } }
            while state.kept.count > 1, bytes > Self.secretBudget {
                bytes -= state.kept.removeFirst().reduce(0) { $0 + $1.utf8.count }
            }
            let kept = state.kept.map { JSONValue.array($0.sorted().map(JSONValue.string)) }
            state.redactor = SecretRedactor(documents: base + kept)
        }
        onRefresh(config)
    }

    /// Whether the line holds `"account"` at all: most lines are activities, not worth decoding twice.
    static func mentionsAccount(_ line: ArraySlice<UInt8>) -> Bool {
        let needle = Array(#""account""#.utf8)
        return line.withUnsafeBytes { haystack in
            needle.withUnsafeBytes { needle in
                guard let base = haystack.baseAddress, haystack.count >= needle.count else { return false }
                // At each quote, compare: memchr is fast even in a debug build, a byte-wise loop is not.
                let last = haystack.count - needle.count
                var offset = 0
                while offset <= last, let hit = memchr(base + offset, 0x22, last - offset + 1) {
                    if memcmp(hit, needle.baseAddress!, needle.count) == 0 { return true }
                    offset = base.distance(to: UnsafeRawPointer(hit)) + 1
                }
                return false
            }
        }
    }
}
