import Glibc
import Foundation

/// Reads a child's pipes on a thread of its own until every one is at end of file.
///
/// One `poll` loop per child instead of dispatch read sources: a source whose descriptor is closed before the
/// source is cancelled is what libdispatch cannot survive, and here nothing but this thread ever closes them.
public enum OutputPump {
    /// Starts the thread. `onData` gets the index into `descriptors` and the bytes, in order per descriptor;
    /// `onEnd` runs once, after the last descriptor reached EOF and all are closed.
    public static func start(
        _ descriptors: [Int32], name: String, onData: @escaping @Sendable (Int, [UInt8]) -> Void,
        onEnd: @escaping @Sendable () -> Void = {}
    ) {
        let thread = Thread {
            var fds = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while fds.contains(where: { $0.fd >= 0 }) {
                let ready = poll(&fds, nfds_t(fds.count), -1)
                if ready < 0 {
                    if errno == EINTR { continue }
                    break
                }
                for index in fds.indices where fds[index].fd >= 0 && fds[index].revents != 0 {
                    let count = buffer.withUnsafeMutableBytes { read(fds[index].fd, $0.baseAddress, $0.count) }
                    if count < 0, errno == EINTR || errno == EAGAIN { continue }
                    if count <= 0 {
                        close(fds[index].fd)
                        fds[index].fd = -1
                        continue
                    }
                    onData(index, Array(buffer[0..<count]))
                }
            }
            for fd in fds where fd.fd >= 0 { close(fd.fd) }
            onEnd()
        }
        thread.name = name
        thread.start()
    }
}

extension ChildProcess {
    /// What a program that ran to completion printed.
    public struct Output: Sendable {
        public var termination: Termination
        /// Standard output and standard error, interleaved as the program wrote them.
        public var text: String
    }

    /// Runs a program to completion, feeding it `input` and collecting its output (both streams in one).
    ///
    /// For tools (python3, kcat, git), not for the roles: the whole output is kept.
    public static func run(_ configuration: Configuration, input: [UInt8]? = nil) async throws -> Output {
        var configuration = configuration
        configuration.standardInput = input == nil ? .null : .pipe
        configuration.standardOutput = .pipe
        configuration.standardError = .standardOutput
        let child = try ChildProcess(configuration)
        if let writer = child.standardInput, let input {
            // From another thread: a program that writes a lot before reading everything must not deadlock
            // against us.
            let thread = Thread {
                input.withUnsafeBytes { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        let written = write(writer, bytes.baseAddress! + offset, bytes.count - offset)
                        if written < 0 {
                            if errno == EINTR { continue }
                            break
                        }
                        offset += written
                    }
                }
                close(writer)
            }
            thread.start()
        }
        let collected = await withCheckedContinuation { (continuation: CheckedContinuation<[UInt8], Never>) in
            let buffer = CollectedBytes()
            OutputPump.start(
                [child.standardOutput!], name: "output-\(child.pid)",
                onData: { _, bytes in buffer.append(bytes) },
                onEnd: { continuation.resume(returning: buffer.bytes) })
        }
        let termination = await child.wait()
        return Output(termination: termination, text: String(decoding: collected, as: UTF8.self))
    }

    /// Bytes gathered by the pump thread and read once it has ended.
    private final class CollectedBytes: @unchecked Sendable {
        // @unchecked: written only by the pump thread, read only after its `onEnd`, which happens after.
        var bytes: [UInt8] = []
        func append(_ more: [UInt8]) { bytes += more }
    }
}
