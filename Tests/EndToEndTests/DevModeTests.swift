import ActivitySyncTesting
import Foundation
import Testing

/// The README's "run the main job" command, as a newcomer runs it.
@Suite("Dev mode", .timeLimit(.minutes(3)))
struct DevModeTests {
    @Test("activity-sync dev --duration 20 commits activities and exits 0")
    func devModeRuns() async throws {
        let dev = try ActivitySyncProcess(
            "dev", arguments: ["dev", "--duration", "20", "--accounts", "5", "--workers", "1"])
        let status = try await dev.waitForExit(timeout: .seconds(150))
        let summary = dev.stdoutLines.first { $0.hasPrefix("summary:") }
        #expect(status == 0, "dev exited \(status): \(dev.allOutput.suffix(3000))")
        let activities = summary?.split(separator: " ").first { $0.hasPrefix("activities=") }
            .flatMap { Int($0.dropFirst("activities=".count)) }
        #expect((activities ?? 0) > 0, "no activities committed: \(summary ?? String(dev.allOutput.suffix(2000)))")
        // The console shows committed activities in the reference wording.
        #expect(
            dev.stdoutLines.contains {
                $0.contains("GitHub notification for") || $0.contains(" created ") || $0.contains(" commented on ")
            })
    }

    @Test("SIGKILL of activity-sync dev leaves none of its children running")
    func devChildrenDieWithIt() async throws {
        let dev = try ActivitySyncProcess(
            "dev", arguments: ["dev", "--duration", "0", "--accounts", "2", "--workers", "2"])
        _ = try await dev.waitForLine(timeout: .seconds(120)) { $0.hasPrefix("  logs ") }
        var children: [Int32] = []
        try await eventually("dev's scheduler and two workers to be running", timeout: .seconds(30)) {
            children = ProcessTable.descendants(of: dev.pid)
            return children.count >= 3
        }
        dev.send(SIGKILL)
        _ = try await dev.waitForExit(timeout: .seconds(10))
        try await eventually("dev's children \(children) to die with it", timeout: .seconds(10)) {
            children.allSatisfy { !ProcessTable.isAlive($0) }
        }
    }
}
