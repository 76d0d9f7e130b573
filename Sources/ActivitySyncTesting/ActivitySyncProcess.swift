import Foundation
import Synchronization

/// A child `activity-sync` process, as an operator would start it.
///
/// End-to-end tests run the real binary (scheduler, worker, embedded Kafka) so that they exercise argument
/// parsing, signal handling and process death exactly as production does. Output is captured line by line so a
/// test can wait for a line instead of sleeping. The process is killed when this object is released, so a
/// failing test never leaves children behind.
public final class ActivitySyncProcess: Sendable {
    private let process: Process
    private let output: OutputBuffer
    public let name: String

    /// Shared between the pipe handlers (Foundation's threads) and the test.
    private final class OutputBuffer: Sendable {
        let state = Mutex(Output())
    }

    private struct Output {
        var stdoutLines: [String] = []
        var stderrLines: [String] = []
        var stdoutPartial = ""
        var stderrPartial = ""
    }

    /// Starts `activity-sync` with `arguments`.
    /// - Parameters:
    ///   - name: a label for failure messages.
    ///   - environment: added to (and overriding) this process's environment.
    public init(_ name: String, arguments: [String], environment: [String: String] = [:]) throws {
        self.name = name
        let process = Process()
        process.executableURL = RepoPaths.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        self.process = process
        self.output = OutputBuffer()
        stdout.fileHandleForReading.readabilityHandler = { [output] handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                return
            }
            output.state.withLock { state in
                ActivitySyncProcess.append(data, to: &state.stdoutPartial, lines: &state.stdoutLines)
            }
        }
        stderr.fileHandleForReading.readabilityHandler = { [output] handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                return
            }
            output.state.withLock { state in
                ActivitySyncProcess.append(data, to: &state.stderrPartial, lines: &state.stderrLines)
            }
        }
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    private static func append(_ data: Data, to partial: inout String, lines: inout [String]) {
        partial += String(decoding: data, as: UTF8.self)
        while let newline = partial.firstIndex(of: "\n") {
            lines.append(String(partial[..<newline]))
            partial = String(partial[partial.index(after: newline)...])
        }
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var stdoutLines: [String] { output.state.withLock { $0.stdoutLines } }
    public var stderrLines: [String] { output.state.withLock { $0.stderrLines } }
    /// Everything written so far, both streams, for failure messages and secret scans.
    public var allOutput: String {
        output.state.withLock { ($0.stdoutLines + [$0.stdoutPartial] + $0.stderrLines + [$0.stderrPartial]).joined(separator: "\n") }
    }

    /// Waits for a stdout line satisfying `predicate` and returns it.
    public func waitForLine(
        timeout: Duration = .seconds(60), where predicate: @escaping @Sendable (String) -> Bool
    ) async throws -> String {
        var found: String?
        try await eventually("\(name): a stdout line (last stderr: \(stderrLines.suffix(5)))", timeout: timeout) {
            found = stdoutLines.first(where: predicate)
            if found == nil, !isRunning {
                throw DeadlineExceeded(
                    description: "\(name) exited with \(process.terminationStatus) before printing the line; stderr: \(stderrLines.suffix(20))")
            }
            return found != nil
        }
        return found!
    }

    /// Sends `signal` (SIGTERM, SIGINT, SIGKILL…).
    public func send(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// Waits for the process to exit and returns its exit status (or the signal number for a signalled exit).
    public func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        try await eventually("\(name) to exit", timeout: timeout, interval: .milliseconds(50)) { !process.isRunning }
        return process.terminationStatus
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`.
    public func stop(grace: Duration = .seconds(20)) async -> Int32 {
        send(SIGTERM)
        if let status = try? await waitForExit(timeout: grace) { return status }
        send(SIGKILL)
        return (try? await waitForExit(timeout: .seconds(10))) ?? -1
    }
}
