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
        onStdoutLine: @escaping (ArraySlice<UInt8>) -> Void, onStderrLine: @escaping (String) -> Void
    ) -> ProcessResult {
        var supervision = ProcessSupervision(
            child, limits: limits, cancelled: cancelled, onStdoutLine: onStdoutLine, onStderrLine: onStderrLine)
        supervision.pump()
        return supervision.finish()
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
