// Reproducer for the crash that made the test suite fail one run in four (issue 15): Foundation's `Process` with
// `Pipe.readabilityHandler` on both streams (as the test kit used it) from several threads, while other threads
// open and close descriptors (as Kafka clients and HTTP servers do). Not part of the build; run by hand:
//
//     swiftc -O scripts/repro-foundation-process.swift -o /tmp/repro-process && /tmp/repro-process 60
//
// On Swift 6.3.1 / Debian 12 it crashed (SIGSEGV) in 2 of 3 one-minute runs; with the handlers replaced by
// /dev/null, 3 of 3 ran clean. activity-sync no longer uses `Process` (Sources/Subprocesses). Each handler sets
// itself to nil on EOF and the pipes are released with the child, as ActivitySyncProcess did.

import Foundation
import Synchronization

let seconds = Double(CommandLine.arguments.dropFirst().first ?? "60") ?? 60
let deadline = Date().addingTimeInterval(seconds)
let spawned = Atomic<Int>(0)

final class Child: @unchecked Sendable {  // @unchecked: `lines` is a Mutex; `process` is set up before run()
    let process = Process()
    final class Box: Sendable { let m = Mutex<[String]>([]) }
    let lines = Box()
    init() throws {
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "echo out; echo err >&2; sleep 0.0$((RANDOM % 5))"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        for pipe in [out, err] {
            pipe.fileHandleForReading.readabilityHandler = { [lines] handle in
                let data = handle.availableData
                guard !data.isEmpty else { handle.readabilityHandler = nil; return }
                lines.m.withLock { $0.append(String(decoding: data, as: UTF8.self)) }
            }
        }
        try process.run()
    }
}

// fd churn: sockets and files opened and closed as fast as possible.
for _ in 0..<2 {
    Thread.detachNewThread {
        while Date() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let f = open("/dev/null", O_RDONLY)
            close(fd); close(f)
        }
    }
}

let group = DispatchGroup()
for _ in 0..<6 {
    group.enter()
    Thread.detachNewThread {
        while Date() < deadline {
            if let child = try? Child() {
                while child.process.isRunning { usleep(2000) }
                spawned.add(1, ordering: .relaxed)
            }
        }
        group.leave()
    }
}
group.wait()
print("no crash: \(spawned.load(ordering: .relaxed)) processes in \(Int(seconds)) s")
