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

/// Polls `condition` until it holds or `timeout` passes, and says whether it held — for assertions that name
/// what they wait for, `#expect(try await eventuallyHolds { … }, "…")`.
public func eventuallyHolds(
    within timeout: Duration = .seconds(60), interval: Duration = .milliseconds(100),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: interval)
    }
    return try await condition()
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

    /// The shared folder with the validation schemas: `$ACTIVITY_SYNC_SHARED_DIR`, else `<repo>/../shared`, else
    /// the nearest ancestor's `shared/` (a git worktree such as `/work/wt/deploy` sits one level deeper than the
    /// main checkout). Nil when none has `schemas/compose-spec.json`.
    public static let sharedSchemas: URL? = {
        let marker = "schemas/compose-spec.json"
        var candidates: [URL] = []
        if let explicit = ProcessInfo.processInfo.environment["ACTIVITY_SYNC_SHARED_DIR"], !explicit.isEmpty {
            candidates.append(URL(fileURLWithPath: explicit))
        }
        var directory = root
        while directory.path != "/" {
            directory = directory.deletingLastPathComponent()
            candidates.append(directory.appendingPathComponent("shared"))
        }
        return candidates.first {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent(marker).path)
        }
    }()

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
