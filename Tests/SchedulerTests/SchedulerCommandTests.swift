import ActivitySyncTesting
import Testing

/// `activity-sync scheduler`'s integration keys come from the integration catalog, not from a list of its own.
@Suite("Scheduler command", .timeLimit(.minutes(1)))
struct SchedulerCommandTests {
    @Test("--integrations naming a key that is not built in is refused at start, naming the key and the fix")
    func unknownBuiltInIsRefused() async throws {
        let process = try ActivitySyncProcess(
            "scheduler", arguments: ["scheduler", "--bootstrap", "127.0.0.1:1", "--integrations", "github,linear"])
        #expect(try await process.waitForExit(timeout: .seconds(30)) != 0)
        try await eventually("the error on stderr", timeout: .seconds(5)) {
            process.stderrLines.contains {
                $0.contains("--integrations: linear is not built in (built in: github)")
                    && $0.contains("--integrations-file")
            }
        }
    }
}
