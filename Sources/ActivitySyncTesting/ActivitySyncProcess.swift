import Foundation
import Subprocesses
import Synchronization

/// A child `activity-sync` process, as an operator would start it.
///
/// End-to-end tests run the real binary (scheduler, worker, embedded Kafka) so that they exercise argument
/// parsing, signal handling and process death exactly as production does. Output is captured line by line so a
/// test can wait for a line instead of sleeping. The process is killed when this object is released, so a
/// failing test never leaves children behind, and the kernel kills it when the test process dies, even by a
/// crash or SIGKILL (``ChildProcess``).
public final class ActivitySyncProcess: Sendable {
    private let process: ChildProcess
    private let output: OutputBuffer
    public let name: String

    /// Shared between the pump thread and the test.
    private final class OutputBuffer: Sendable {
        let state = Mutex(Output())
    }

    private struct Output {
        var stdoutLines: [String] = []
        var stderrLines: [String] = []
        /// When each stderr line arrived (the process's own log timestamps are whole seconds).
        var stderrTimes: [Date] = []
        var stdoutPartial = ""
        var stderrPartial = ""
        /// Both pipes reached EOF: every line the process wrote is in the lists above.
        var ended = false
    }

    /// Starts `activity-sync` with `arguments`.
    /// - Parameters:
    ///   - name: a label for failure messages.
    ///   - environment: added to (and overriding) this process's environment.
    public init(_ name: String, arguments: [String], environment: [String: String] = [:]) throws {
        self.name = name
        var configuration = ChildProcess.Configuration(
            executable: RepoPaths.binary.path, arguments: arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { _, new in new })
        configuration.standardOutput = .pipe
        configuration.standardError = .pipe
        let process = try ChildProcess(configuration)
        self.process = process
        let output = OutputBuffer()
        self.output = output
        OutputPump.start([process.standardOutput!, process.standardError!], name: "\(name)-output") { index, bytes in
            output.state.withLock { state in
                if index == 0 {
                    ActivitySyncProcess.append(bytes, to: &state.stdoutPartial, lines: &state.stdoutLines)
                } else {
                    ActivitySyncProcess.append(bytes, to: &state.stderrPartial, lines: &state.stderrLines)
                    let now = Date()
                    while state.stderrTimes.count < state.stderrLines.count { state.stderrTimes.append(now) }
                }
            }
        } onEnd: {
            output.state.withLock { $0.ended = true }
        }
    }

    deinit {
        process.send(SIGKILL)
    }

    private static func append(_ bytes: [UInt8], to partial: inout String, lines: inout [String]) {
        partial += String(decoding: bytes, as: UTF8.self)
        while let newline = partial.firstIndex(of: "\n") {
            lines.append(String(partial[..<newline]))
            partial = String(partial[partial.index(after: newline)...])
        }
    }

    public var pid: Int32 { process.pid }
    public var isRunning: Bool { process.isRunning }
    public var stdoutLines: [String] { output.state.withLock { $0.stdoutLines } }
    public var stderrLines: [String] { output.state.withLock { $0.stderrLines } }
    /// Everything written so far, both streams, for failure messages and secret scans.
    public var allOutput: String {
        output.state.withLock {
            ($0.stdoutLines + [$0.stdoutPartial] + $0.stderrLines + [$0.stderrPartial]).joined(separator: "\n")
        }
    }

    /// The stderr lines, each prefixed with the time it arrived (`HH:mm:ss.SSS`, UTC): for ordering one process's
    /// log against another's, or against record timestamps, to the millisecond.
    public var timestampedStderr: String {
        output.state.withLock { state in
            zip(state.stderrTimes, state.stderrLines).map { time, line in
                "\(Self.clock(time)) \(line)"
            }.joined(separator: "\n")
        }
    }

    private static func clock(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970
        let day = Int(seconds) % 86_400
        let millis = Int((seconds - seconds.rounded(.down)) * 1000)
        return String(format: "%02d:%02d:%02d.%03d", day / 3600, day / 60 % 60, day % 60, millis)
    }

    /// Waits for a stdout line satisfying `predicate` and returns it.
    public func waitForLine(
        timeout: Duration = .seconds(60), where predicate: @escaping @Sendable (String) -> Bool
    ) async throws -> String {
        var found: String?
        var exitSeen: ContinuousClock.Instant?
        try await eventually("\(name): a stdout line (last stderr: \(stderrLines.suffix(5)))", timeout: timeout) {
            found = stdoutLines.first(where: predicate)
            if found == nil, !isRunning { exitSeen = exitSeen ?? .now }
            // An exited process's last lines may still be in the pipe: it has not printed the line only once the
            // pump read both pipes to their end (or, if a descendant keeps them open, a moment after the exit).
            if found == nil, let exitSeen, output.state.withLock({ $0.ended }) || .now - exitSeen > .seconds(2) {
                throw DeadlineExceeded(
                    description:
                        "\(name) \(process.termination.map { "\($0)" } ?? "exited") before printing the line; stderr: \(stderrLines.suffix(20))"
                )
            }
            return found != nil
        }
        return found!
    }

    /// Sends `signal` (SIGTERM, SIGINT, SIGKILL…).
    public func send(_ signal: Int32) {
        process.send(signal)
    }

    /// Waits for the process to exit and returns its exit status (or the signal number for a signalled exit).
    public func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        try await eventually("\(name) to exit", timeout: timeout, interval: .milliseconds(50)) { !process.isRunning }
        switch process.termination {
        case .exited(let code): return code
        case .signalled(let signal): return signal
        case nil: return -1
        }
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`.
    public func stop(grace: Duration = .seconds(20)) async -> Int32 {
        send(SIGTERM)
        if let status = try? await waitForExit(timeout: grace) { return status }
        send(SIGKILL)
        return (try? await waitForExit(timeout: .seconds(10))) ?? -1
    }
}
