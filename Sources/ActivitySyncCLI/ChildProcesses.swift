import Foundation
import Synchronization

/// Child `activity-sync` processes started by `dev` and the benchmarks, so a demo runs the same processes as a
/// deployment (own address space, own Kafka clients, real signals).
///
/// Output goes to one log file per child: the console stays readable and the logs are there when something
/// goes wrong.
final class ChildProcesses: Sendable {
    private let children = Mutex<[(name: String, process: Process)]>([])
    let logDirectory: URL

    init(logDirectory: URL) throws {
        self.logDirectory = logDirectory
        try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
    }

    /// The running executable, so children are the same build as the parent.
    static var executable: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    }

    @discardableResult
    func start(_ name: String, arguments: [String], environment: [String: String] = [:]) throws -> Int32 {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let logURL = logDirectory.appendingPathComponent("\(name).log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        children.withLock { $0.append((name, process)) }
        return process.processIdentifier
    }

    /// Names of children that have exited, with their status: a demo says so instead of silently degrading.
    func exited() -> [(name: String, status: Int32)] {
        children.withLock { list in
            list.filter { !$0.process.isRunning }.map { ($0.name, $0.process.terminationStatus) }
        }
    }

    /// SIGTERM to every child, then SIGKILL to those still running after `grace`.
    func stopAll(grace: Duration) async {
        let list = children.withLock { $0 }
        for child in list where child.process.isRunning { kill(child.process.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now.advanced(by: grace)
        while ContinuousClock.now < deadline, list.contains(where: { $0.process.isRunning }) {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for child in list where child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
    }
}
