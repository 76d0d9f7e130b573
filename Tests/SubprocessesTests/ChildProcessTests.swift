import ActivitySyncTesting
import Foundation
import Subprocesses
import Synchronization
import Testing

@Suite("Child processes", .timeLimit(.minutes(3)))
struct ChildProcessTests {
    @Test("run collects both streams and the exit status, and feeds stdin")
    func runCollects() async throws {
        let output = try await ChildProcess.run(
            ChildProcess.Configuration(executable: "sh", arguments: ["-c", "cat; echo err >&2; exit 3"]),
            input: Array("hello\n".utf8))
        #expect(output.termination == .exited(3))
        #expect(output.text.contains("hello\n") && output.text.contains("err\n"), "\(output.text)")
    }

    @Test("a program that is not there is an error that says so")
    func missingProgram() {
        #expect {
            try ChildProcess(ChildProcess.Configuration(executable: "no-such-program-activity-sync"))
        } throws: { error in
            (error as? SubprocessError)?.isMissingProgram == true && "\(error)".contains("not on PATH")
        }
    }

    @Test("a signalled child reports the signal; its descriptors above 2 are not inherited")
    func signalledAndNoInheritedDescriptors() async throws {
        var configuration = ChildProcess.Configuration(
            executable: "sh", arguments: ["-c", "ls /proc/self/fd; kill -9 $$"])
        configuration.standardOutput = .pipe
        let child = try ChildProcess(configuration)
        let collected = Mutex<[UInt8]>([])
        let ended = Atomic<Bool>(false)
        OutputPump.start(
            [child.standardOutput!], name: "fd-list", onData: { _, bytes in collected.withLock { $0 += bytes } },
            onEnd: { ended.store(true, ordering: .relaxed) })
        #expect(await child.wait() == .signalled(SIGKILL))
        try await eventually("the pipe to end") { ended.load(ordering: .relaxed) }
        // 0, 1, 2 and the descriptor `ls` opens to read the directory: nothing of ours.
        let descriptors = String(decoding: collected.withLock { $0 }, as: UTF8.self).split(separator: "\n")
        #expect(descriptors.count <= 4, "inherited: \(descriptors)")
    }

    @Test("when a group leader exits, what it left running in its group is killed")
    func groupKilledOnExit() async throws {
        var configuration = ChildProcess.Configuration(executable: "sh", arguments: ["-c", "sleep 300 & echo $!"])
        configuration.ownProcessGroup = true
        configuration.killsGroupOnExit = true
        let output = try await ChildProcess.run(configuration)
        let helper = try #require(Int32(output.text.trimmingCharacters(in: .whitespacesAndNewlines)))
        try await eventually("the helper \(helper) to be killed", timeout: .seconds(10)) {
            !ProcessTable.isAlive(helper)
        }
    }

    @Test("wait(timeout:) returns nil for a child that still runs, and the exit once it ends")
    func waitWithTimeout() async throws {
        let child = try ChildProcess(ChildProcess.Configuration(executable: "sleep", arguments: ["30"]))
        #expect(await child.wait(timeout: .milliseconds(200)) == nil)
        child.send(SIGTERM)
        #expect(await child.wait(timeout: .seconds(10)) == .signalled(SIGTERM))
    }

    /// The pattern that crashed libdispatch with Foundation's `Process` (1 run in 4 of the suite; 2 of 3 one-minute
    /// runs of a reproducer): many children with piped output started and reaped at once while other threads open
    /// and close descriptors.
    @Test("hundreds of concurrent children with piped output, with descriptors churning beside them")
    func concurrentChildrenWithDescriptorChurn() async throws {
        let stop = Atomic<Bool>(false)
        let churn = Thread {
            while !stop.load(ordering: .relaxed) {
                let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                let file = open("/dev/null", O_RDONLY)
                close(socket)
                close(file)
            }
        }
        churn.start()
        defer { stop.store(true, ordering: .relaxed) }
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<6 {
                group.addTask {
                    var ok = 0
                    for _ in 0..<50 {
                        let output = try await ChildProcess.run(
                            ChildProcess.Configuration(executable: "sh", arguments: ["-c", "echo out; echo err >&2"]))
                        if output.termination == .exited(0), output.text.contains("out"), output.text.contains("err") {
                            ok += 1
                        }
                    }
                    return ok
                }
            }
            var total = 0
            for try await ok in group { total += ok }
            #expect(total == 300)
        }
    }
}

/// The test kit's children die with the test process, also when it is SIGKILLed: a crashed run leaves nothing
/// behind for the next one.
@Suite("Children die with their parent", .timeLimit(.minutes(3)))
struct ChildrenDieWithParentTests {
    static let probeVariable = "ACTIVITY_SYNC_PROBE_PID_FILE"

    @Test("SIGKILL of a test process leaves none of the test kit's children running")
    func testKitChildrenDie() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("probe-\(UUID().uuidString).pids")
        defer { try? FileManager.default.removeItem(at: pidFile) }
        // This very test binary, asked to run only the probe below, which starts children with the test kit.
        var configuration = ChildProcess.Configuration(
            executable: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
            arguments: ["--testing-library", "swift-testing", "--filter", "probeStartsChildrenAndWaits"],
            environment: ProcessInfo.processInfo.environment.merging([Self.probeVariable: pidFile.path]) { _, new in new
            })
        configuration.standardOutput = .null
        configuration.standardError = .null
        let probe = try ChildProcess(configuration)
        defer { probe.send(SIGKILL) }
        var children: [Int32] = []
        try await eventually("the probe to start its children", timeout: .seconds(90)) {
            try #require(probe.isRunning, "the probe ended: \(String(describing: probe.termination))")
            children = ((try? String(contentsOf: pidFile, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                Int32($0)
            }
            return children.count == 2
        }
        #expect(children.allSatisfy(ProcessTable.isAlive))
        probe.send(SIGKILL)
        #expect(await probe.wait() == .signalled(SIGKILL))
        try await eventually("the test kit's children \(children) to die with the probe", timeout: .seconds(10)) {
            children.allSatisfy { !ProcessTable.isAlive($0) }
        }
    }

    /// Runs only inside the test above, as its child: starts two `activity-sync` processes with the test kit,
    /// writes their pids, and waits to be killed.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[ChildrenDieWithParentTests.probeVariable] != nil))
    func probeStartsChildrenAndWaits() async throws {
        let path = try #require(ProcessInfo.processInfo.environment[Self.probeVariable])
        let kafka = try ActivitySyncProcess("probe-kafka", arguments: ["kafka", "embedded"])
        let simulator = try ActivitySyncProcess("probe-github", arguments: ["github-sim"])
        try "\(kafka.pid)\n\(simulator.pid)\n".write(toFile: path, atomically: true, encoding: .utf8)
        // Not a wait for something to happen: the parent test SIGKILLs this process well before the end.
        try await Task.sleep(for: .seconds(120))
    }
}
