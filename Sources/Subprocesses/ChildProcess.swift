import CSubprocesses
import Glibc
import Foundation
import Synchronization

/// A child process that dies with its parent and is reaped by a thread of its own.
///
/// Every process that activity-sync starts — the roles that `dev` runs, the integration CLIs a worker runs, the
/// binaries the test kit and the benchmarks run — is started here, so all of them share these rules:
/// - It is made (clone and exec, as posix_spawn does) on one long-lived thread with `PR_SET_PDEATHSIG` = SIGKILL:
///   when this process dies, even by SIGKILL or a crash, the kernel kills the child (and, since our own children
///   do the same, the child's children). The signal follows the *thread* that created it, which is why that
///   thread never exits.
/// - Its exit is awaited by a blocking `waitid` on a dedicated thread, never by a SIGCHLD handler or a dispatch
///   source, so nothing else in the process is disturbed and no other child is reaped by accident.
/// - Descriptors other than 0–2 are not inherited, signal dispositions and the mask are reset.
///
/// Foundation's `Process` was used before; used concurrently with descriptors opened and closed on other threads
/// it crashed this toolchain's libdispatch (docs/architecture.md, "Child processes").
public final class ChildProcess: Sendable {
    /// Where one of the child's standard descriptors comes from or goes to.
    public enum Stream: Sendable, Hashable {
        /// /dev/null.
        case null
        /// This process's own descriptor (0, 1 or 2).
        case inherit
        /// A pipe whose other end this object holds (`standardInput`, `standardOutput`, `standardError`).
        case pipe
        /// A file, created or truncated (for output; opened read-only for input).
        case file(String)
        /// Standard error only: the same place as standard output.
        case standardOutput
    }

    /// What to start, and how.
    public struct Configuration: Sendable {
        /// A path, or a name looked up on the child's `PATH`.
        public var executable: String
        /// The arguments after the program's name.
        public var arguments: [String]
        /// The child's whole environment.
        public var environment: [String: String]
        public var workingDirectory: String?
        public var standardInput: Stream = .null
        public var standardOutput: Stream = .inherit
        public var standardError: Stream = .inherit
        /// The child leads a process group of its own, so ``ChildProcess/send(_:)`` reaches everything it started.
        public var ownProcessGroup = false
        /// When the child exits, SIGKILL whatever is left in its group before reaping it (only with
        /// ``ownProcessGroup``): a program's helpers do not outlive it.
        public var killsGroupOnExit = false
        /// SIGKILL from the kernel when this process dies. Off only for a child that must outlive us.
        public var diesWithParent = true

        /// - Parameter environment: the child's whole environment; nil: this process's.
        public init(executable: String, arguments: [String] = [], environment: [String: String]? = nil) {
            self.executable = executable
            self.arguments = arguments
            self.environment = environment ?? ProcessInfo.processInfo.environment
        }
    }

    /// How the child ended.
    public enum Termination: Sendable, Hashable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        /// The exit status, or 128 + the signal as a shell reports it.
        public var status: Int32 {
            switch self {
            case .exited(let code): code
            case .signalled(let signal): 128 + signal
            }
        }

        public var description: String {
            switch self {
            case .exited(let code): "exited with status \(code)"
            case .signalled(let signal): "killed by signal \(signal)"
            }
        }
    }

    public let pid: Int32
    /// Our children that are not reaped yet: ``ProcessTree/sweepOrphans()`` leaves these to their own reaper.
    static let registry = Mutex<Set<Int32>>([])
    /// Our ends of the pipes asked for with ``Stream/pipe``; the caller owns and closes them.
    public let standardInput: Int32?
    public let standardOutput: Int32?
    public let standardError: Int32?
    private let ownProcessGroup: Bool
    private let state = Mutex(WaitState())
    /// Blocking waiters (threads) sleep on this; async ones are continuations in `state`.
    private let exitCondition = NSCondition()

    private struct WaitState {
        /// Set once the child has exited, before it is reaped: from then on its pid is not signalled.
        var exited = false
        var termination: Termination?
        var waiters: [UInt64: CheckedContinuation<Termination?, Never>] = [:]
        var nextWaiter: UInt64 = 0
        /// Waiters whose timeout passed before they were registered.
        var expired: Set<UInt64> = []
    }

    /// Starts a child. Blocks the caller until the child has exec'd (about a millisecond), as posix_spawn does.
    /// - Throws: ``SubprocessError`` when the program cannot be found or started.
    public init(_ configuration: Configuration) throws {
        let executable = try Self.resolve(configuration.executable, environment: configuration.environment)
        let descriptors = try StandardDescriptors(
            [configuration.standardInput, configuration.standardOutput, configuration.standardError])
        defer { descriptors.closeChildEnds() }
        let spawned = Self.spawn(executable, configuration, descriptors: descriptors.theirs)
        guard spawned.error == 0 else {
            descriptors.closeOurs()
            throw SubprocessError.system("starting \(executable)", spawned.error)
        }
        pid = spawned.pid
        standardInput = descriptors.ours[0]
        standardOutput = descriptors.ours[1]
        standardError = descriptors.ours[2]
        ownProcessGroup = configuration.ownProcessGroup
        let killsGroup = configuration.ownProcessGroup && configuration.killsGroupOnExit
        let thread = Thread { [self] in self.reap(killingGroup: killsGroup) }
        thread.name = "child-\(pid)"
        thread.start()
    }

    /// What the child's 0, 1 and 2 are, and this side's ends of its pipes.
    ///
    /// Everything here is opened close-on-exec: a descriptor meant for this child must not leak into another that
    /// other code starts meanwhile (the spawn helper clears the flag on the child's own 0–2). A failure closes all
    /// that was opened so far, so a start that fails leaks nothing.
    private struct StandardDescriptors {
        /// The child's 0, 1 and 2.
        var theirs: [Int32] = [-1, -1, -1]
        /// Our ends of the pipes, handed to the caller.
        var ours: [Int32?] = [nil, nil, nil]
        /// Opened only for the child: closed here once it has them.
        var childEnds: [Int32] = []

        init(_ streams: [Stream]) throws {
            do {
                for (index, stream) in streams.enumerated() { try open(stream, at: index) }
            } catch {
                closeOurs()
                closeChildEnds()
                throw error
            }
        }

        /// Opens what one stream needs; `index` is the child's descriptor number.
        private mutating func open(_ stream: Stream, at index: Int) throws {
            switch stream {
            case .inherit:
                theirs[index] = Int32(index)
            case .standardOutput:
                theirs[index] = index == 2 ? theirs[1] : -1
            case .null:
                let fd = Glibc.open("/dev/null", (index == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC)
                guard fd >= 0 else { throw SubprocessError.system("open /dev/null", errno) }
                childEnds.append(fd)
                theirs[index] = fd
            case .file(let path):
                let flags = index == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC
                let fd = Glibc.open(path, flags | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw SubprocessError.system("open \(path)", errno) }
                childEnds.append(fd)
                theirs[index] = fd
            case .pipe:
                var ends: [Int32] = [-1, -1]
                guard pipe(&ends) == 0 else { throw SubprocessError.system("pipe", errno) }
                // Our end must not leak into children started meanwhile by other code; theirs closes above 2.
                for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
                let (child, parent) = index == 0 ? (ends[0], ends[1]) : (ends[1], ends[0])
                childEnds.append(child)
                theirs[index] = child
                ours[index] = parent
            }
            if theirs[index] < 0 {
                throw SubprocessError.invalid("standard input and output cannot be `.standardOutput`")
            }
        }

        func closeOurs() { for fd in ours.compactMap({ $0 }) { close(fd) } }
        func closeChildEnds() { for fd in childEnds { close(fd) } }
    }

    /// Clones and execs on the spawner thread, the one whose death the child's `PR_SET_PDEATHSIG` follows; the pid
    /// is registered before anyone can see it, since an orphan sweep holds the registry and must not reap our child.
    /// `error` is 0 or the errno of the failed start.
    private static func spawn(
        _ executable: String, _ configuration: Configuration, descriptors: [Int32]
    ) -> (error: Int32, pid: pid_t) {
        let argv = ([executable] + configuration.arguments).map { strdup($0) } + [nil]
        let envp = configuration.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        let vectors = CStringVectors(argv: argv, envp: envp)
        return Self.registry.withLock { registry in
            let spawned: (Int32, pid_t) = SpawnerThread.shared.run {
                let (argv, envp) = (vectors.argv, vectors.envp)
                var pid: pid_t = 0
                let error = executable.withCString { path in
                    Self.withOptionalCString(configuration.workingDirectory) { directory in
                        activity_sync_spawn(
                            path, argv, envp, directory, descriptors[0], descriptors[1], descriptors[2],
                            configuration.ownProcessGroup ? 1 : 0, configuration.diesWithParent ? 1 : 0, &pid)
                    }
                }
                return (error, pid)
            }
            if spawned.0 == 0 { registry.insert(spawned.1) }
            return spawned
        }
    }

    /// nil while the child runs and until it is reaped.
    public var termination: Termination? { state.withLock { $0.termination } }
    public var isRunning: Bool { termination == nil }
    /// Whether the child has exited (it may not be reaped yet).
    public var hasExited: Bool { state.withLock { $0.exited } }

    /// Sends `signal` to the child (to its whole group when it leads one), unless it has exited: once reaped, its
    /// pid may name another process.
    public func send(_ signal: Int32) {
        state.withLock { state in
            guard !state.exited else { return }
            kill(ownProcessGroup ? -pid : pid, signal)
        }
    }

    /// Waits for the child to exit.
    public func wait() async -> Termination {
        await wait(timeout: nil)!
    }

    /// Waits for the child to exit, at most `timeout`; nil if it still runs then.
    public func wait(timeout: Duration?) async -> Termination? {
        let (id, done): (UInt64, Termination?) = state.withLock { state in
            state.nextWaiter += 1
            return (state.nextWaiter, state.termination)
        }
        if let done { return done }
        var timer: Task<Void, Never>?
        if let timeout {
            timer = Task { [weak self] in
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                self?.expire(id)
            }
        }
        defer { timer?.cancel() }
        return await withCheckedContinuation { continuation in
            let (ready, done): (Bool, Termination?) = state.withLock { state in
                if let termination = state.termination { return (true, termination) }
                if state.expired.remove(id) != nil { return (true, nil) }
                state.waiters[id] = continuation
                return (false, nil)
            }
            if ready { continuation.resume(returning: done) }
        }
    }

    /// A timed wait ran out: resume it with nil, or mark it so that it does not park at all.
    private func expire(_ id: UInt64) {
        let waiter: CheckedContinuation<Termination?, Never>? = state.withLock { state in
            guard let waiter = state.waiters.removeValue(forKey: id) else {
                state.expired.insert(id)
                return nil
            }
            return waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Waits on the calling thread; for code that already runs on a thread of its own, never on the
    /// cooperative pool.
    public func waitBlocking() -> Termination {
        exitCondition.lock()
        defer { exitCondition.unlock() }
        while true {
            if let termination { return termination }
            exitCondition.wait()
        }
    }

    /// The reaper thread: waits without reaping (so the pid keeps naming the group), kills the group if asked,
    /// then reaps and wakes every waiter.
    private func reap(killingGroup: Bool) {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0, errno == EINTR {}
        // Not reaped yet, so the pid (and the group id) cannot have been reused.
        state.withLock { $0.exited = true }
        if killingGroup { kill(-pid, SIGKILL) }
        var status: Int32 = 0
        var reaped = false
        while !reaped {
            if waitpid(pid, &status, 0) == pid { reaped = true } else if errno != EINTR { break }
        }
        if reaped { _ = Self.registry.withLock { $0.remove(pid) } }
        let termination: Termination =
            !reaped ? .exited(-1) : (status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f))
        exitCondition.lock()
        let waiters = state.withLock { state in
            state.termination = termination
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        exitCondition.broadcast()
        exitCondition.unlock()
        for waiter in waiters { waiter.resume(returning: termination) }
    }

    /// The program's path: as given when it contains a slash, else the first match on the child's `PATH`.
    static func resolve(_ program: String, environment: [String: String]) throws -> String {
        guard !program.isEmpty else { throw SubprocessError.invalid("the command is empty") }
        if program.contains("/") {
            guard access(program, X_OK) == 0 else { throw SubprocessError.notExecutable(program) }
            return program
        }
        let path = environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw SubprocessError.notOnPath(program, path)
    }

    /// The C argument and environment vectors, handed to the spawner thread while the caller waits for it.
    private struct CStringVectors: @unchecked Sendable {
        // @unchecked: the caller owns the strings and blocks until the spawner thread is done with them.
        let argv: [UnsafeMutablePointer<CChar>?]
        let envp: [UnsafeMutablePointer<CChar>?]
    }

    private static func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
        guard let string else { return body(nil) }
        return string.withCString { body($0) }
    }
}
