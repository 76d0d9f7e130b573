import ActivitySyncTesting
import Foundation
import Synchronization
import Testing

@testable import ExternalIntegrations

/// The sandbox an operator relies on: exit codes seen, limits enforced on the whole process group, nothing of
/// the worker's environment passed on.
@Suite("ProcessRunner", .timeLimit(.minutes(1)))
struct ProcessRunnerTests {
    let runner = ProcessRunner(environment: ProcessEnvironment.minimal())

    func limits(timeout: Duration = .seconds(20), maxOutputBytes: Int = 1 << 20) -> ProcessLimits {
        ProcessLimits(timeout: timeout, maxOutputBytes: maxOutputBytes)
    }

    @Test("stdout and the exit status come back")
    func exitStatus() async throws {
        let result = try await runner.run(["/bin/sh", "-c", "echo hello; exit 3"], limits: limits()) { _ in }
        #expect(result.termination == .exited(3))
        #expect(String(decoding: result.stdout, as: UTF8.self) == "hello\n")
        #expect(!result.succeeded)
    }

    @Test("a timeout kills the whole process group, grandchildren included")
    func timeoutKillsGroup() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("grandchild-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: pidFile) }
        let started = ContinuousClock.now
        let result = try await runner.run(
            ["/bin/sh", "-c", "sleep 300 & echo $! > \(pidFile.path); wait"], limits: limits(timeout: .seconds(1))
        ) { _ in }
        #expect(result.termination == .timedOut(.seconds(1)))
        #expect(ContinuousClock.now - started < .seconds(10))
        let grandchild = try #require(
            Int32(try String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        try await eventually("the grandchild sleep is gone", timeout: .seconds(5)) { !Self.isAlive(grandchild) }
    }

    /// A pid file's process: not running and not a zombie either — /proc has no entry for it at all.
    static func leftNothing(_ pidFile: URL) throws -> (pid: Int32, gone: Bool) {
        let pid = try #require(
            Int32(try String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        return (pid, !FileManager.default.fileExists(atPath: "/proc/\(pid)"))
    }

    @Test("a CLI that forks a setsid grandchild and then times out leaves no process and no zombie")
    func setsidGrandchildOnTimeout() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("escaped-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: pidFile) }
        let result = try await runner.run(
            ["/bin/sh", "-c", "setsid sleep 300 > /dev/null 2>&1 & echo $! > \(pidFile.path); sleep 300"],
            limits: limits(timeout: .seconds(1))
        ) { _ in }
        #expect(result.termination == .timedOut(.seconds(1)))
        // Checked as soon as the run returns: the runner killed and reaped it before returning.
        let (pid, gone) = try Self.leftNothing(pidFile)
        #expect(gone, "process \(pid) (left the group with setsid) is still in /proc")
        #expect(result.killedDescendants >= 1, "what was killed is counted")
    }

    @Test("a CLI that exits 0 after detaching a daemon (setsid, parent gone at once) leaves nothing either")
    func detachedDaemonOnExit() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("daemon-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: pidFile) }
        let result = try await runner.run(
            ["/bin/sh", "-c", "(setsid sleep 300 > /dev/null 2>&1 & echo $! > \(pidFile.path)); exit 0"],
            limits: limits()
        ) { _ in }
        #expect(result.termination == .exited(0))
        let (pid, gone) = try Self.leftNothing(pidFile)
        #expect(gone, "daemon \(pid) is still in /proc")
    }

    @Test("stdout past the limit kills the program; memory stays bounded")
    func outputLimit() async throws {
        let result = try await runner.run(["/bin/sh", "-c", "yes"], limits: limits(maxOutputBytes: 64 * 1024)) { _ in }
        #expect(result.termination == .outputLimitExceeded(64 * 1024))
        #expect(result.stdout.count <= 64 * 1024)
    }

    @Test("stderr arrives line by line; long lines are cut and a flood is counted, not kept")
    func stderrLines() async throws {
        var limits = limits()
        limits.maxStderrLineBytes = 10
        limits.maxStderrLines = 3
        let lines = Mutex<[String]>([])
        let result = try await runner.run(
            ["/bin/sh", "-c", "echo one >&2; echo 0123456789abcdef >&2; printf 'three\\nfour\\nfive' >&2"],
            limits: limits
        ) { line in lines.withLock { $0.append(line) } }
        #expect(lines.withLock { $0 } == ["one", "0123456789 […]", "three"])
        #expect(result.droppedStderrLines == 2)
    }

    @Test("the program sees only the minimal environment and what the manifest adds")
    func minimalEnvironment() async throws {
        let runner = ProcessRunner(
            environment: ProcessEnvironment.minimal(
                adding: ["EXTRA": "yes"], inherited: ["PATH": "/usr/bin:/bin", "ACTIVITY_SYNC_SEALING_KEY_FILE": "/k"]))
        let result = try await runner.run(["env"], limits: limits()) { _ in }
        let names = Set(
            String(decoding: result.stdout, as: UTF8.self).split(separator: "\n").map {
                String($0.split(separator: "=")[0])
            })
        #expect(names == ["PATH", "HOME", "LANG", "TZ", "EXTRA"])
    }

    @Test("cancelling the waiting task kills the program at once")
    func cancellation() async throws {
        let task = Task { try await runner.run(["/bin/sh", "-c", "sleep 300"], limits: limits()) { _ in } }
        try await Task.sleep(for: .milliseconds(300))  // the scenario: cancelled while the program runs
        // Measured from the cancellation: under a loaded machine the start alone can take seconds.
        let cancelled = ContinuousClock.now
        task.cancel()
        let result = try await task.value
        #expect(result.termination == .cancelled)
        #expect(ContinuousClock.now - cancelled < .seconds(5))
    }

    @Test("a missing program is an error before anything runs")
    func missingProgram() async throws {
        await #expect(throws: ExternalIntegrationError.self) {
            _ = try await runner.run(["no-such-program-\(UUID().uuidString)"], limits: limits()) { _ in }
        }
    }

    @Test("command words split like a shell's, without expansion")
    func words() throws {
        #expect(try commandWords("node /opt/x/index.js") == ["node", "/opt/x/index.js"])
        #expect(try commandWords(#"sh -c 'echo $HOME; ls' "a b"\ c"#) == ["sh", "-c", "echo $HOME; ls", "a b c"])
        #expect(throws: ExternalIntegrationError.self) { try commandWords("node 'open") }
    }

    /// Alive and not a zombie waiting for a reaper.
    static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        guard let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }
}

extension ProcessRunnerTests {
    @Test("an argument over Linux's 128 KiB limit is refused with the reason, not an errno")
    func argumentTooLong() async throws {
        do {
            _ = try await runner.run(["/bin/true", String(repeating: "x", count: 200_000)], limits: limits()) { _ in }
            Issue.record("ran")
        } catch let error as ExternalIntegrationError {
            #expect(error.message.contains("at most 131071 bytes in one argument"))
        }
    }
}
