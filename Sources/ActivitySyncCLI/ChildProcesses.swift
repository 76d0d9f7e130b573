import Foundation
import Subprocesses
import Synchronization

/// Child `activity-sync` processes started by `dev` and the benchmarks, so a demo runs the same processes as a
/// deployment (own address space, own Kafka clients, real signals).
///
/// Output goes to one log file per child: the console stays readable and the logs are there when something
/// goes wrong. The children die with this process, also when it is SIGKILLed or crashes (``ChildProcess``).
final class ChildProcesses: Sendable {
    private let children = Mutex<[(name: String, process: ChildProcess)]>([])
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
        var configuration = ChildProcess.Configuration(
            executable: Self.executable.path, arguments: arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { _, new in new })
        let logPath = logDirectory.appendingPathComponent("\(name).log").path
        configuration.standardOutput = .file(logPath)
        configuration.standardError = .standardOutput
        let process = try ChildProcess(configuration)
        children.withLock { $0.append((name, process)) }
        return process.pid
    }

    /// Names of children that have exited, with their status: a demo says so instead of silently degrading.
    func exited() -> [(name: String, status: Int32)] {
        children.withLock { list in
            list.compactMap { child in child.process.termination.map { (child.name, $0.status) } }
        }
    }

    /// SIGTERM to every child, then SIGKILL to those still running after `grace`.
    func stopAll(grace: Duration) async {
        let list = children.withLock { $0.map(\.process) }
        for child in list { child.send(SIGTERM) }
        await withTaskGroup(of: Void.self) { group in
            for child in list {
                group.addTask {
                    if await child.wait(timeout: grace) == nil {
                        child.send(SIGKILL)
                        _ = await child.wait()
                    }
                }
            }
        }
    }
}
