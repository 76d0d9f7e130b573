import CSubprocesses
import Foundation
import Glibc
import Synchronization

/// A process as /proc names it: its pid and its start time (clock ticks after boot), so a pid reused by another
/// process is never mistaken for it.
public struct ProcessIdentity: Sendable, Hashable {
    public var pid: Int32
    public var startTime: UInt64
}

/// Finds, kills and reaps what our children started, wherever it went.
///
/// A process group does not hold everything a program starts: a descendant that calls `setsid` (a daemonising
/// helper, `setsid CMD &`) leaves it, and when its parent dies it is reparented — to PID 1, which in a container
/// without an init never reaps it, or, once ``becomeSubreaper()`` ran, to this process. So a supervisor
/// snapshots a child's descendants while it runs (``descendants(of:)``), kills every one of them that still runs
/// at the end (``kill(_:)``), and then ``sweepOrphans()`` kills and reaps whatever was reparented to us.
public enum ProcessTree {
    private static let subreaper = Mutex<Bool?>(nil)

    /// Makes this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`), once; later calls
    /// return the first answer. Orphans then stay in reach of ``sweepOrphans()`` instead of becoming PID 1's.
    @discardableResult
    public static func becomeSubreaper() -> Bool {
        subreaper.withLock { done in
            if let done { return done }
            let ok = activity_sync_become_subreaper() == 0
            done = ok
            return ok
        }
    }

    /// Every process below `pid` (children, their children, …), read from `/proc/PID/task/*/children`.
    public static func descendants(of pid: Int32) -> Set<ProcessIdentity> {
        var found = Set<ProcessIdentity>()
        var queue = [pid]
        while let next = queue.popLast() {
            for child in children(of: next) {
                guard let identity = identity(child), found.insert(identity).inserted else { continue }
                queue.append(child)
            }
        }
        return found
    }

    /// SIGKILLs each of `processes` that still runs (a zombie has nothing left to kill). Returns how many.
    @discardableResult
    public static func kill(_ processes: Set<ProcessIdentity>) -> Int {
        var killed = 0
        for process in processes {
            guard let info = stat(process.pid), info.startTime == process.startTime, info.state != "Z" else { continue }
            if Glibc.kill(process.pid, SIGKILL) == 0 { killed += 1 }
        }
        return killed
    }

    /// Kills every process reparented to us that is not a ``ChildProcess`` of ours (an orphan some program
    /// abandoned), and reaps those that have exited. Returns how many were still running.
    ///
    /// Holds the registry of our own children meanwhile, so a child being started or reaped by its own thread is
    /// never taken for an orphan.
    @discardableResult
    public static func sweepOrphans() -> Int {
        let me = getpid()
        return ChildProcess.registry.withLock { ours in
            var killed = 0
            for child in children(of: me) where !ours.contains(child) {
                guard let info = stat(child) else { continue }
                if info.state == "Z" {
                    var status: Int32 = 0
                    _ = waitpid(child, &status, WNOHANG)
                } else if Glibc.kill(child, SIGKILL) == 0 {
                    killed += 1
                }
            }
            return killed
        }
    }

    /// Whether any of `processes` still exists, even as a zombie, or an orphan of ours waits to be reaped.
    public static func anyLeft(of processes: Set<ProcessIdentity>) -> Bool {
        if processes.contains(where: { stat($0.pid)?.startTime == $0.startTime }) { return true }
        let me = getpid()
        let orphans = ChildProcess.registry.withLock { ours in children(of: me).filter { !ours.contains($0) } }
        return !orphans.isEmpty
    }

    /// Kills `processes` and every orphan reparented to us, then reaps them, waiting at most `limit` for the
    /// kernel to finish them. Returns how many were still running.
    public static func killAndReap(_ processes: Set<ProcessIdentity>, limit: Duration = .seconds(2)) -> Int {
        var killed = kill(processes) + sweepOrphans()
        let deadline = ContinuousClock.now + limit
        // Killed descendants of killed parents are reparented to us as they die: sweep until none is left.
        while anyLeft(of: processes), ContinuousClock.now < deadline {
            usleep(5_000)
            killed += kill(processes) + sweepOrphans()
        }
        return killed
    }

    static func identity(_ pid: Int32) -> ProcessIdentity? {
        stat(pid).map { ProcessIdentity(pid: pid, startTime: $0.startTime) }
    }

    static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var found: [Int32] = []
        for task in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)
            else { continue }
            found += text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return found
    }

    /// State, parent and start time from /proc/PID/stat (fields 3, 4 and 22; the command in field 2 may hold
    /// spaces and parentheses, so fields are counted from its last `)`).
    static func stat(_ pid: Int32) -> (state: Character, parent: Int32, startTime: UInt64)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let parent = Int32(fields[1]),
            let start = UInt64(fields[19])
        else { return nil }
        return (state, parent, start)
    }
}
