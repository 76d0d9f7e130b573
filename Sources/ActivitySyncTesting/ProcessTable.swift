import Foundation

/// What /proc says about processes: for tests that check that nothing was left running.
public enum ProcessTable {
    /// Whether `pid` names a process that still runs: a zombie (exited, not yet reaped by whoever adopted it)
    /// does not count, it holds no resources but its table entry.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard let state = stat(pid)?.state else { return false }
        return state != "Z" && state != "X"
    }

    /// Every running descendant of `pid` (children, their children, …).
    public static func descendants(of pid: Int32) -> [Int32] {
        var parents: [Int32: [Int32]] = [:]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let child = Int32(entry), let info = stat(child), info.state != "Z" else { continue }
            parents[info.parent, default: []].append(child)
        }
        var found: [Int32] = []
        var queue = [pid]
        while let next = queue.popLast() {
            for child in parents[next] ?? [] {
                found.append(child)
                queue.append(child)
            }
        }
        return found
    }

    /// State letter and parent pid from /proc/PID/stat (fields 3 and 4; the command in field 2 may hold spaces).
    private static func stat(_ pid: Int32) -> (state: Character, parent: Int32)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 1, let state = fields[0].first, let parent = Int32(fields[1]) else { return nil }
        return (state, parent)
    }
}
