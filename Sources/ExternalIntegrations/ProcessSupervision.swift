import Subprocesses
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// One run's reader thread: what it has read, and the steps from the first `poll` to the reaped child.
///
/// Lives on that one thread only, so it needs no lock; the cancellation handler reaches it through the flag alone.
struct ProcessSupervision {
    private let child: ChildProcess
    private let limits: ProcessLimits
    private let cancelled: ProcessRunner.CancellationFlag
    private let onStdoutLine: (ArraySlice<UInt8>) -> Void
    private let onStderrLine: (String) -> Void
    private let clock = ContinuousClock()
    private var schedule: SupervisionSchedule
    private var stdout: [UInt8] = []
    /// Where the stdout line not yet handed on starts.
    private var stdoutLineStart = 0
    private var stderrLine: [UInt8] = []
    private var stderrLineCut = false
    private var stderrLines = 0
    private var dropped = 0
    /// Set when the runner stopped the child (a limit, cancellation); nil while its own exit decides.
    private var verdict: ProcessResult.Termination?
    /// stdout, then stderr; a closed one has `fd` -1.
    private var fds: [pollfd]
    private var buffer = [UInt8](repeating: 0, count: 65_536)
    private var stderrBuffer = [UInt8](repeating: 0, count: 65_536)
    /// Everything the child started that was seen running, group or not, snapshotted every 100 ms: what
    /// escapes the group with `setsid` is killed at the end too.
    private var descendants = Set<ProcessIdentity>()

    init(
        _ child: ChildProcess, limits: ProcessLimits, cancelled: ProcessRunner.CancellationFlag,
        onStdoutLine: @escaping (ArraySlice<UInt8>) -> Void, onStderrLine: @escaping (String) -> Void
    ) {
        self.child = child
        self.limits = limits
        self.cancelled = cancelled
        self.onStdoutLine = onStdoutLine
        self.onStderrLine = onStderrLine
        schedule = SupervisionSchedule(start: clock.now, timeout: limits.timeout)
        fds = [
            pollfd(fd: child.standardOutput!, events: Int16(POLLIN), revents: 0),
            pollfd(fd: child.standardError!, events: Int16(POLLIN), revents: 0),
        ]
    }

    /// Empties both pipes until both are closed or a limit is reached. The pipes are always emptied, so a program
    /// never blocks on a full one while it runs; one that prints too much or runs too long is stopped here.
    mutating func pump() {
        let child = child  // asked by the schedule while it is being changed
        while fds.contains(where: { $0.fd >= 0 }) {
            let next = schedule.next(
                cancelled: cancelled.raised.load(ordering: .relaxed), now: clock.now, childExited: child.hasExited)
            guard case .poll(let waitMs, let snapshot) = next else {
                if case .stop(let verdict?) = next { self.verdict = verdict }
                return
            }
            if snapshot { descendants.formUnion(ProcessTree.descendants(of: child.pid)) }
            let ready = poll(&fds, nfds_t(fds.count), waitMs)
            if ready < 0, errno != EINTR { return }
            guard ready > 0 else { continue }  // after EINTR the revents are stale: a read could block
            if fds[0].fd >= 0, fds[0].revents != 0 {
                _ = readStdout()
                if verdict != nil { return }
            }
            if fds[1].fd >= 0, fds[1].revents != 0 {
                readStderr()
                if verdict != nil { return }
            }
        }
    }

    /// Reads what stdout holds (one read) and hands on the lines it completes; false when nothing was read
    /// (end of file, an error, the output limit: then `verdict` is set). The limit is checked before the bytes
    /// are kept, so a runaway program costs at most `maxOutputBytes` of memory.
    private mutating func readStdout() -> Bool {
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
        for at in Self.newlines(in: buffer, count: count) {
            onStdoutLine(stdout[stdoutLineStart..<(start + at)])
            stdoutLineStart = start + at + 1
        }
        return true
    }

    /// The offsets of the newlines among the first `count` bytes. memchr: up to 16 MiB pass here, and a byte-wise
    /// loop is slow in a debug build.
    private static func newlines(in buffer: [UInt8], count: Int) -> [Int] {
        buffer.withUnsafeBytes { raw -> [Int] in
            var found: [Int] = []
            var offset = 0
            while offset < count, let hit = memchr(raw.baseAddress! + offset, 0x0A, count - offset) {
                let at = raw.baseAddress!.distance(to: UnsafeRawPointer(hit))
                found.append(at)
                offset = at + 1
            }
            return found
        }
    }

    /// Reads what stdout holds until it holds nothing more: before a stderr line is handed on, so that whatever the
    /// program printed before it (a refreshed token) is known — the two pipes are polled together, and one read
    /// takes at most 64 KiB.
    private mutating func drainStdout() {
        while verdict == nil, fds[0].fd >= 0 {
            var probe = pollfd(fd: fds[0].fd, events: Int16(POLLIN), revents: 0)
            guard poll(&probe, 1, 0) > 0, readStdout() else { return }
        }
    }

    /// Reads what stderr holds (one read) and hands on its complete lines, after stdout is drained (see
    /// `drainStdout`). A line is cut at `maxStderrLineBytes`, so one endless line cannot exhaust memory either.
    private mutating func readStderr() {
        let count = stderrBuffer.withUnsafeMutableBytes { read(fds[1].fd, $0.baseAddress, $0.count) }
        if count < 0, errno == EINTR || errno == EAGAIN { return }
        if count <= 0 {
            close(fds[1].fd)
            fds[1].fd = -1
            return
        }
        drainStdout()
        if verdict != nil { return }
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

    /// Hands on the stderr line read so far, marked when it was cut; past `maxStderrLines` it is only counted, so a
    /// chatty program cannot flood the log.
    private mutating func emitStderr() {
        if stderrLines < limits.maxStderrLines {
            stderrLines += 1
            onStderrLine(String(decoding: stderrLine, as: UTF8.self) + (stderrLineCut ? " […]" : ""))
        } else {
            dropped += 1
        }
        stderrLine.removeAll(keepingCapacity: true)
        stderrLineCut = false
    }

    /// Ends the run: a sync leaves nothing behind. The last stderr line is handed on, everything the child started
    /// is killed (its group, and what left the group), and the child and what was orphaned to us are reaped.
    mutating func finish() -> ProcessResult {
        if !stderrLine.isEmpty { emitStderr() }
        // The cancellation handler may have killed the child before the pump saw the flag.
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

/// The reader thread's timing rules, apart from any clock or process so that they can be tested without one:
/// when the pumping stops, how long the next `poll` may wait, and when the child's descendants are snapshotted.
struct SupervisionSchedule {
    /// What the reader thread does next.
    enum Action: Equatable {
        /// Stop pumping. The verdict when the runner stops the child (cancelled, timed out); nil when the child
        /// exited a second ago and only something it started still holds a pipe open: its helpers must not keep
        /// the run alive.
        case stop(ProcessResult.Termination?)
        /// Wait for the pipes at most `milliseconds`; snapshot the child's descendants first when `snapshot`.
        case poll(milliseconds: Int32, snapshot: Bool)
    }

    let timeout: Duration
    let deadline: ContinuousClock.Instant
    /// When the child was first seen exited.
    private(set) var exitedAt: ContinuousClock.Instant?
    private var lastSnapshot: ContinuousClock.Instant

    init(start: ContinuousClock.Instant, timeout: Duration) {
        self.timeout = timeout
        deadline = start.advanced(by: timeout)
        lastSnapshot = start - .seconds(1)
    }

    /// The next step at `now`. A `poll` waits at most 100 ms, so that a cancellation is seen that soon even when the
    /// handler's kill did not close the pipes, and the descendants are snapshotted that often while the child runs
    /// (after it exited, what it started is no longer its descendant). `childExited` is asked only until it is true.
    mutating func next(cancelled: Bool, now: ContinuousClock.Instant, childExited: @autoclosure () -> Bool) -> Action {
        if cancelled { return .stop(.cancelled) }
        if now >= deadline { return .stop(.timedOut(timeout)) }
        if let exitedAt, now - exitedAt > .seconds(1) { return .stop(nil) }
        if exitedAt == nil, childExited() { exitedAt = now }
        var snapshot = false
        if now - lastSnapshot >= .milliseconds(100) {
            lastSnapshot = now
            snapshot = exitedAt == nil
        }
        let wait = min(deadline - now, .milliseconds(100))
        let milliseconds = wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000
        return .poll(milliseconds: Int32(max(1, milliseconds)), snapshot: snapshot)
    }
}
