import ActivitySyncTesting
import Foundation
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

/// Runs a program to completion and collects its output.
///
/// `Process` offers only blocking waits and reads, so the whole exchange runs on a dispatch queue and the test
/// awaits a continuation: the cooperative pool is never blocked.
func runProcess(
    _ executable: String, _ arguments: [String], stdin: Data? = nil, in directory: URL = RepoPaths.root
) async throws -> ProcessResult {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [executable] + arguments
            process.currentDirectoryURL = directory
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            let input = Pipe()
            process.standardInput = input
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: error)
                return
            }
            // Feed stdin from another queue: a child that writes a lot before reading everything must not
            // deadlock against us.
            let writer = input.fileHandleForWriting
            DispatchQueue.global().async {
                if let stdin { try? writer.write(contentsOf: stdin) }
                try? writer.close()
            }
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            continuation.resume(
                returning: ProcessResult(
                    status: process.terminationStatus, output: String(decoding: data, as: UTF8.self)))
        }
    }
}
