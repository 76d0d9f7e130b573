import Foundation
import Subprocesses
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What an integration process may use before it is stopped.
public struct ProcessLimits: Sendable, Hashable {
    /// Wall-clock time from spawn to exit; past it the whole process group gets SIGKILL.
    public var timeout: Duration
    /// Bytes of stdout kept; one more and the process group gets SIGKILL, so a runaway CLI cannot exhaust memory.
    public var maxOutputBytes: Int
    /// A stderr line longer than this is cut (the rest of it is dropped).
    public var maxStderrLineBytes = 2048
    /// Stderr lines handed on per run; later ones are counted, not logged, so a chatty CLI cannot flood the log.
    public var maxStderrLines = 200

    public init(timeout: Duration, maxOutputBytes: Int) {
        self.timeout = timeout
        self.maxOutputBytes = maxOutputBytes
    }
}

/// How a run ended, and what it printed on stdout.
public struct ProcessResult: Sendable {
    public enum Termination: Sendable, Hashable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)
        /// Killed by the runner at the timeout.
        case timedOut(Duration)
        /// Killed by the runner when stdout passed the limit.
        case outputLimitExceeded(Int)
        /// Killed because the task waiting for it was cancelled (worker shutdown, revoked partition).
        case cancelled

        public var description: String {
            switch self {
            case .exited(let code): "exited with status \(code)"
            case .signalled(let signal): "killed by signal \(signal)"
            case .timedOut(let limit): "ran longer than \(limit.components.seconds) s and was killed"
            case .outputLimitExceeded(let limit): "printed more than \(limit) bytes on stdout and was killed"
            case .cancelled: "was cancelled and killed"
            }
        }
    }

    public var termination: Termination
    public var stdout: [UInt8]
    /// Stderr lines beyond ``ProcessLimits/maxStderrLines``, not handed on.
    public var droppedStderrLines: Int
    /// Processes the program started that were still running when it ended or was stopped, and were killed —
    /// its group's and those that left the group (`setsid`) alike.
    public var killedDescendants = 0

    public var succeeded: Bool { termination == .exited(0) }
}

/// Runs a program as the leader of its own process group, with a timeout, a stdout limit and line-wise stderr.
///
/// The child is started by ``ChildProcess`` as the leader of a new process group (default signal dispositions,
/// an empty signal mask, stdin from /dev/null, no inherited descriptors besides 0–2, SIGKILL when the worker
/// dies), so killing `-pid` stops it and everything it started. Its pipes are read by one dedicated thread per run with `poll`, never on the cooperative pool, and the
/// awaiting task is resumed through a continuation. After the child exits, the rest of its group is killed too:
/// a sync leaves nothing behind.
public struct ProcessRunner: Sendable {
    /// The child's entire environment; nothing of the worker's is inherited.
    public var environment: [String: String]
    /// The child's working directory; nil keeps the worker's.
    public var workingDirectory: String?

    public init(environment: [String: String], workingDirectory: String? = nil) {
        self.environment = environment
        self.workingDirectory = workingDirectory
    }

    /// Runs `arguments` (the program first) to completion or to a limit.
    ///
    /// - Parameters:
    ///   - onStdoutLine: called on the reader thread with each stdout line as it arrives (without the newline; the
    ///     last one also without, at end of file), in order. A slice of the kept stdout: nothing is copied.
    ///   - onStderrLine: called on the reader thread with each stderr line (without the newline), in order — and
    ///     only after every stdout line the program wrote before that stderr line was handed to `onStdoutLine`.
    /// - Important: Both callbacks run on the thread that empties the pipes: one that blocks stops the program at
    ///   its next write to a full pipe.
    /// - Returns: how it ended and its stdout (at most `limits.maxOutputBytes`).
    /// - Throws: ``ExternalIntegrationError`` when the program cannot be started at all.
    public func run(
        _ arguments: [String], limits: ProcessLimits,
        onStdoutLine: @escaping @Sendable (ArraySlice<UInt8>) -> Void = { _ in },
        onStderrLine: @escaping @Sendable (String) -> Void
    ) async throws -> ProcessResult {
        guard let program = arguments.first, !program.isEmpty else {
            throw ExternalIntegrationError.cannotStart("the command is empty")
        }
        // Linux refuses (E2BIG) any single argument of 128 KiB or more, and the SDK contract puts the config and
        // the state on the command line: say so instead of failing with an errno.
        if let (index, argument) = arguments.enumerated().first(where: {
            $0.element.utf8.count >= Self.maxArgumentBytes
        }) {
            throw ExternalIntegrationError.cannotStart(
                "argument \(index) is \(argument.utf8.count) bytes; Linux passes at most \(Self.maxArgumentBytes - 1) "
                    + "bytes in one argument (the SDK contract puts the config and the state on the command line)")
        }
        // Orphans of what we start come to us, not to PID 1, so that they can be killed and reaped.
        ProcessTree.becomeSubreaper()
        var configuration = ChildProcess.Configuration(
            executable: program, arguments: Array(arguments.dropFirst()), environment: environment)
        configuration.workingDirectory = workingDirectory
        configuration.standardOutput = .pipe
        configuration.standardError = .pipe
        configuration.ownProcessGroup = true
        configuration.killsGroupOnExit = true
        let child: ChildProcess
        do {
            child = try ChildProcess(configuration)
        } catch let error as SubprocessError {
            throw ExternalIntegrationError.cannotStart(
                error.isMissingProgram ? "\(error); check the command in the integrations file" : "\(error)")
        }
        let cancelled = CancellationFlag()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ProcessResult, Never>) in
                let thread = Thread {
                    let result = Self.supervise(
                        child, limits: limits, cancelled: cancelled, onStdoutLine: onStdoutLine,
                        onStderrLine: onStderrLine)
                    continuation.resume(returning: result)
                }
                thread.name = "integration-\(child.pid)"
                thread.start()
            }
        } onCancel: {
            cancelled.raised.store(true, ordering: .relaxed)
            // The reader thread notices within its poll interval; killing now stops the work at once.
            child.send(SIGKILL)
        }
    }

    /// `MAX_ARG_STRLEN` on Linux: 32 pages, including the terminating NUL.
    static let maxArgumentBytes = 131_072

    /// Set by the cancellation handler, read by the reader thread.
    final class CancellationFlag: Sendable {
        let raised = Atomic<Bool>(false)
    }

    /// The reader thread: pumps both pipes until EOF or a limit, kills the group, reaps the child.
    private static func supervise(
        _ child: ChildProcess, limits: ProcessLimits, cancelled: CancellationFlag,
        onStdoutLine: (ArraySlice<UInt8>) -> Void, onStderrLine: (String) -> Void
    ) -> ProcessResult {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: limits.timeout)
        var stdout: [UInt8] = []
        /// Where the stdout line not yet handed on starts.
        var stdoutLineStart = 0
        var stderrLine: [UInt8] = []
        var stderrLineCut = false
        var stderrLines = 0
        var dropped = 0
        var verdict: ProcessResult.Termination?
        var fds = [
            pollfd(fd: child.standardOutput!, events: Int16(POLLIN), revents: 0),
            pollfd(fd: child.standardError!, events: Int16(POLLIN), revents: 0),
        ]
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var stderrBuffer = [UInt8](repeating: 0, count: 65_536)
        /// When the child exited while something it started still holds a pipe open.
        var exitedAt: ContinuousClock.Instant?
        /// Everything the child started that was seen running, group or not, snapshotted every 100 ms: what
        /// escapes the group with `setsid` is killed at the end too.
        var descendants = Set<ProcessIdentity>()
        var lastSnapshot = clock.now - .seconds(1)

        func emitStderr() {
            if stderrLines < limits.maxStderrLines {
                stderrLines += 1
                onStderrLine(String(decoding: stderrLine, as: UTF8.self) + (stderrLineCut ? " […]" : ""))
            } else {
                dropped += 1
            }
            stderrLine.removeAll(keepingCapacity: true)
            stderrLineCut = false
        }

        /// Reads what stdout holds (one read) and hands on the lines it completes; false when nothing was read
        /// (end of file, an error, the output limit: then `verdict` is set).
        func readStdout() -> Bool {
            let count = buffer.withUnsafeMutableBytes { read(fds[0].fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR || errno == EAGAIN { return true }
            if count <= 0 {
                close(fds[0].fd)
                fds[0].fd = -1
                // A last line without a newline is complete once the program closed its stdout.
                if stdoutLineStart < stdout.count { onStdoutLine(stdout[stdoutLineStart...]) }
                stdoutLineStart = stdout.count
                return false
            }
            guard stdout.count + count <= limits.maxOutputBytes else {
                verdict = .outputLimitExceeded(limits.maxOutputBytes)
                return false
            }
            let start = stdout.count
            stdout.append(contentsOf: buffer[0..<count])
            // memchr: up to 16 MiB pass here, and a byte-wise loop is slow in a debug build.
            let newlines = buffer.withUnsafeBytes { raw -> [Int] in
                var found: [Int] = []
                var offset = 0
                while offset < count, let hit = memchr(raw.baseAddress! + offset, 0x0A, count - offset) {
                    let at = raw.baseAddress!.distance(to: UnsafeRawPointer(hit))
                    found.append(at)
                    offset = at + 1
                }
                return found
            }
            for at in newlines {
                onStdoutLine(stdout[stdoutLineStart..<(start + at)])
                stdoutLineStart = start + at + 1
            }
            return true
        }

        /// Reads stdout until it holds nothing more: before a stderr line is handed on, so that whatever the
        /// program printed before it (a refreshed token) is known — the two pipes are polled together, and one read
        /// takes at most 64 KiB.
        func drainStdout() {
            while verdict == nil, fds[0].fd >= 0 {
                var probe = pollfd(fd: fds[0].fd, events: Int16(POLLIN), revents: 0)
                guard poll(&probe, 1, 0) > 0, readStdout() else { return }
            }
        }

        loop: while fds.contains(where: { $0.fd >= 0 }) {
            if cancelled.raised.load(ordering: .relaxed) {
                verdict = .cancelled
                break
            }
            let now = clock.now
            if now >= deadline {
                verdict = .timedOut(limits.timeout)
                break
            }
            if let exitedAt, now - exitedAt > .seconds(1) { break }
            if exitedAt == nil, child.hasExited { exitedAt = now }
            if now - lastSnapshot >= .milliseconds(100) {
                lastSnapshot = now
                if exitedAt == nil { descendants.formUnion(ProcessTree.descendants(of: child.pid)) }
            }
            let wait = min(deadline - now, .milliseconds(100))
            let waitMs = Int32(
                max(1, wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000))
            let ready = poll(&fds, nfds_t(fds.count), waitMs)
            if ready < 0, errno != EINTR { break }
            guard ready > 0 else { continue }  // after EINTR the revents are stale: a read could block
            if fds[0].fd >= 0, fds[0].revents != 0 {
                _ = readStdout()
                if verdict != nil { break loop }
            }
            if fds[1].fd >= 0, fds[1].revents != 0 {
                let count = stderrBuffer.withUnsafeMutableBytes { read(fds[1].fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR || errno == EAGAIN { continue }
                if count <= 0 {
                    close(fds[1].fd)
                    fds[1].fd = -1
                    continue
                }
                drainStdout()
                if verdict != nil { break loop }
                for byte in stderrBuffer[0..<count] {
                    if byte == UInt8(ascii: "\n") {
                        emitStderr()
                    } else if stderrLine.count < limits.maxStderrLineBytes {
                        stderrLine.append(byte)
                    } else {
                        stderrLineCut = true
                    }
                }
            }
        }
        if !stderrLine.isEmpty { emitStderr() }
        // The cancellation handler may have killed the child before this loop saw the flag.
        if verdict == nil, cancelled.raised.load(ordering: .relaxed) { verdict = .cancelled }
        if !child.hasExited { descendants.formUnion(ProcessTree.descendants(of: child.pid)) }
        var killed = ProcessTree.kill(descendants)
        // The whole group, whether the child still runs (a limit) or has exited (its helpers): the child's reaper
        // kills the group before it reaps, and `send` stops once the child has exited, so no reused pid is hit.
        child.send(SIGKILL)
        for fd in fds where fd.fd >= 0 { close(fd.fd) }
        let termination: ProcessResult.Termination
        if let verdict {
            termination = verdict
        } else {
            switch child.waitBlocking() {
            case .exited(let code): termination = .exited(code)
            case .signalled(let signal): termination = .signalled(signal)
            }
        }
        // Then what left the group, and whatever was orphaned to us meanwhile; all of it reaped.
        _ = child.waitBlocking()
        killed += ProcessTree.killAndReap(descendants)
        var result = ProcessResult(termination: termination, stdout: stdout, droppedStderrLines: dropped)
        result.killedDescendants = killed
        return result
    }

}

/// The environment an integration process gets: only what a program needs to start, plus what its manifest
/// names. The worker's own variables (Kafka servers, the sealing key file, anything an operator exported) are
/// not passed on.
public enum ProcessEnvironment {
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// `PATH` (the worker's, else a default), `HOME=/tmp` unless given, `LANG=C.UTF-8`, `TZ=UTC`, then `extra`.
    /// - Parameter inherited: where `PATH` comes from; nil: this process's environment.
    public static func minimal(adding extra: [String: String] = [:], inherited: [String: String]? = nil)
        -> [String: String]
    {
        let inherited = inherited ?? ProcessInfo.processInfo.environment
        var environment = [
            "PATH": inherited["PATH"] ?? defaultPath, "HOME": "/tmp", "LANG": "C.UTF-8", "TZ": "UTC",
        ]
        environment.merge(extra) { _, new in new }
        return environment
    }
}
