import Foundation
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

    public var succeeded: Bool { termination == .exited(0) }
}

/// Runs a program as the leader of its own process group, with a timeout, a stdout limit and line-wise stderr.
///
/// The child is started with `posix_spawn` (`POSIX_SPAWN_SETPGROUP`, default signal dispositions, an empty signal
/// mask, stdin from /dev/null, no inherited descriptors besides 0–2), so killing `-pid` stops it and everything it
/// started. Its pipes are read by one dedicated thread per run with `poll`, never on the cooperative pool, and the
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
    ///   - onStderrLine: called on the reader thread with each stderr line (without the newline), in order.
    /// - Returns: how it ended and its stdout (at most `limits.maxOutputBytes`).
    /// - Throws: ``ExternalIntegrationError`` when the program cannot be started at all.
    public func run(
        _ arguments: [String], limits: ProcessLimits, onStderrLine: @escaping @Sendable (String) -> Void
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
        let executable = try resolve(program)
        let child = try Self.spawn(
            executable: executable, arguments: arguments, environment: environment,
            workingDirectory: workingDirectory)
        let cancelled = CancellationFlag()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ProcessResult, Never>) in
                let thread = Thread {
                    let result = Self.supervise(child, limits: limits, cancelled: cancelled, onStderrLine: onStderrLine)
                    continuation.resume(returning: result)
                }
                thread.name = "integration-\(child.pid)"
                thread.start()
            }
        } onCancel: {
            cancelled.raised.store(true, ordering: .relaxed)
            // The reader thread notices within its poll interval; killing now stops the work at once.
            kill(-child.pid, SIGKILL)
        }
    }

    /// `MAX_ARG_STRLEN` on Linux: 32 pages, including the terminating NUL.
    static let maxArgumentBytes = 131_072

    /// The program's path: as given when it contains a slash, else the first match on the child's PATH.
    func resolve(_ program: String) throws -> String {
        if program.contains("/") {
            guard access(program, X_OK) == 0 else {
                throw ExternalIntegrationError.cannotStart(
                    "\(program) is not an executable file; check the command in the integrations file")
            }
            return program
        }
        let path = environment["PATH"] ?? ProcessEnvironment.defaultPath
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw ExternalIntegrationError.cannotStart(
            "\(program) is not on PATH (\(path)); check the command in the integrations file")
    }

    /// Set by the cancellation handler, read by the reader thread.
    final class CancellationFlag: Sendable {
        let raised = Atomic<Bool>(false)
    }

    struct Child: Sendable {
        var pid: pid_t
        var stdout: Int32
        var stderr: Int32
    }

    private static func spawn(
        executable: String, arguments: [String], environment: [String: String], workingDirectory: String?
    ) throws -> Child {
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0 else { throw ExternalIntegrationError.cannotStart("pipe() failed: errno \(errno)") }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0])
            close(outPipe[1])
            throw ExternalIntegrationError.cannotStart("pipe() failed: errno \(errno)")
        }
        // Close-on-exec on every end: the dup2s below give the child its copies; another integration spawned
        // concurrently must not inherit these (it would hold our pipe open and hide the EOF).
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        GNUSpawnActions.closeFrom(3, in: &actions)
        if let workingDirectory {
            guard GNUSpawnActions.changeDirectory(workingDirectory, in: &actions) else {
                throw ExternalIntegrationError.cannotStart("this C library cannot set a child's working directory")
            }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        // The worker ignores SIGPIPE; a CLI must die of it like any program run from a shell.
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        close(outPipe[1])
        close(errPipe[1])
        guard status == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            throw ExternalIntegrationError.cannotStart(
                "posix_spawn \(executable) failed: \(String(cString: strerror(status)))")
        }
        return Child(pid: pid, stdout: outPipe[0], stderr: errPipe[0])
    }

    /// The reader thread: pumps both pipes until EOF or a limit, kills the group, reaps the child.
    private static func supervise(
        _ child: Child, limits: ProcessLimits, cancelled: CancellationFlag,
        onStderrLine: (String) -> Void
    ) -> ProcessResult {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: limits.timeout)
        var stdout: [UInt8] = []
        var stderrLine: [UInt8] = []
        var stderrLineCut = false
        var stderrLines = 0
        var dropped = 0
        var verdict: ProcessResult.Termination?
        var fds = [
            pollfd(fd: child.stdout, events: Int16(POLLIN), revents: 0),
            pollfd(fd: child.stderr, events: Int16(POLLIN), revents: 0),
        ]
        var buffer = [UInt8](repeating: 0, count: 65_536)
        /// When the child exited while something it started still holds a pipe open.
        var exitedAt: ContinuousClock.Instant?

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
            if exitedAt == nil, hasExited(child.pid) { exitedAt = now }
            let wait = min(deadline - now, .milliseconds(100))
            let waitMs = Int32(
                max(1, wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000))
            let ready = poll(&fds, nfds_t(fds.count), waitMs)
            if ready < 0, errno != EINTR { break }
            for index in fds.indices where fds[index].fd >= 0 && fds[index].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(fds[index].fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR || errno == EAGAIN { continue }
                if count <= 0 {
                    close(fds[index].fd)
                    fds[index].fd = -1
                    continue
                }
                if index == 0 {
                    guard stdout.count + count <= limits.maxOutputBytes else {
                        verdict = .outputLimitExceeded(limits.maxOutputBytes)
                        break loop
                    }
                    stdout.append(contentsOf: buffer[0..<count])
                } else {
                    for byte in buffer[0..<count] {
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
        }
        if !stderrLine.isEmpty { emitStderr() }
        // The cancellation handler may have killed the child before this loop saw the flag.
        if verdict == nil, cancelled.raised.load(ordering: .relaxed) { verdict = .cancelled }
        // The child is not reaped yet, so its pid still names its group: nothing else can own -pid now.
        kill(-child.pid, SIGKILL)
        for fd in fds where fd.fd >= 0 { close(fd.fd) }
        var status: Int32 = 0
        var reaped = false
        while !reaped {
            if waitpid(child.pid, &status, 0) == child.pid { reaped = true } else if errno != EINTR { break }
        }
        let termination: ProcessResult.Termination
        if let verdict {
            termination = verdict
        } else if !reaped {
            // Someone else reaped it (a waitpid(-1) elsewhere in the process): its status is unknown, not success.
            termination = .exited(-1)
        } else if status & 0x7f == 0 {
            termination = .exited((status >> 8) & 0xff)
        } else {
            termination = .signalled(status & 0x7f)
        }
        return ProcessResult(termination: termination, stdout: stdout, droppedStderrLines: dropped)
    }

    /// Whether the child has exited, without reaping it (so its pid keeps naming its group).
    private static func hasExited(_ pid: pid_t) -> Bool {
        var info = siginfo_t()
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 else { return true }
        return info._sifields._sigchld.si_pid == pid
    }
}

/// glibc's `_np` spawn actions, looked up at run time because Swift's Glibc module does not export `__USE_GNU`
/// declarations.
enum GNUSpawnActions {
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias ChangeDirectory =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    private static func symbol(_ name: String) -> UnsafeMutableRawPointer? {
        guard let process = dlopen(nil, RTLD_NOW) else { return nil }
        return dlsym(process, name)
    }

    /// Closes every descriptor from `lowest` up in the child (glibc ≥ 2.34); without it, close-on-exec on our own
    /// descriptors still keeps the pipes private, and libraries' sockets are opened close-on-exec.
    static func closeFrom(_ lowest: Int32, in actions: inout posix_spawn_file_actions_t) {
        guard let pointer = symbol("posix_spawn_file_actions_addclosefrom_np") else { return }
        _ = unsafeBitCast(pointer, to: CloseFrom.self)(&actions, lowest)
    }

    static func changeDirectory(_ path: String, in actions: inout posix_spawn_file_actions_t) -> Bool {
        guard let pointer = symbol("posix_spawn_file_actions_addchdir_np") else { return false }
        return path.withCString { unsafeBitCast(pointer, to: ChangeDirectory.self)(&actions, $0) } == 0
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
