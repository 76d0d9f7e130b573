public import Foundation

/// Raised when a condition polled by ``eventually(_:timeout:interval:condition:)`` did not hold in time.
public struct DeadlineExceeded: Error, CustomStringConvertible {
    public let description: String
}

/// Polls `condition` until it returns true or `timeout` passes.
///
/// Tests wait for what a user would see (a record on a topic, a line on stdout) with a deadline instead of
/// sleeping for a guessed time: they finish as soon as the system is done and fail with a clear message when it
/// never is.
/// - Throws: ``DeadlineExceeded`` naming `what` when the deadline passes.
public func eventually(
    _ what: String,
    timeout: Duration = .seconds(30),
    interval: Duration = .milliseconds(100),
    condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try await condition() { return }
        if clock.now >= deadline {
            throw DeadlineExceeded(description: "timed out after \(timeout) waiting for: \(what)")
        }
        try await Task.sleep(for: interval)
    }
}

/// Where things are in a checkout: tests find the repo, `docs/` and the `shared/` folder beside the clone
/// (CI lays it out the same way).
public enum RepoPaths {
    /// The repository root (the folder holding Package.swift).
    public static let root: URL = {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // ActivitySyncTesting
            .deletingLastPathComponent()  // Sources
            .deletingLastPathComponent()
    }()

    /// `../shared` relative to the repository root.
    public static let shared: URL = root.deletingLastPathComponent().appendingPathComponent("shared")

    /// The built `activity-sync` executable: `ACTIVITY_SYNC_BIN` if set, else the one beside the test bundle
    /// (`swift build --build-tests` builds both into the same folder).
    public static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["ACTIVITY_SYNC_BIN"] {
            return URL(fileURLWithPath: path)
        }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("activity-sync")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        // The runner may live inside an .xctest bundle folder on some platforms.
        let up = beside.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("activity-sync")
        if FileManager.default.isExecutableFile(atPath: up.path) { return up }
        return root.appendingPathComponent(".build/debug/activity-sync")
    }
}
