import ActivitySyncTesting
import Foundation
import Subprocesses
import Testing

extension RepoPaths {
    static func sharedOrFail(sourceLocation: SourceLocation = #_sourceLocation) throws -> URL {
        try #require(
            sharedSchemas,
            """
            the shared schemas folder was not found: expected ../shared/schemas next to the repository, or set \
            ACTIVITY_SYNC_SHARED_DIR
            """, sourceLocation: sourceLocation)
    }
}

/// Python-based checks need `python3` with `jsonschema` and `PyYAML` (scripts/ensure-deps installs them).
/// `ACTIVITY_SYNC_SKIP_PYTHON=1` — the same switch that tells ensure-deps not to install them — turns them off.
let pythonChecksEnabled = ProcessInfo.processInfo.environment["ACTIVITY_SYNC_SKIP_PYTHON"] != "1"

struct ProcessResult: Sendable {
    var status: Int32
    /// Standard output and standard error, interleaved as the process wrote them.
    var output: String
}

/// Runs a program (on `PATH`) to completion and collects its output.
func runProcess(
    _ executable: String, _ arguments: [String], stdin: Data? = nil, in directory: URL = RepoPaths.root
) async throws -> ProcessResult {
    var configuration = ChildProcess.Configuration(executable: executable, arguments: arguments)
    configuration.workingDirectory = directory.path
    let output = try await ChildProcess.run(configuration, input: stdin.map { Array($0) })
    return ProcessResult(status: output.termination.status, output: output.text)
}
