import Glibc

/// A child process could not be started; the message says which program and why.
public struct SubprocessError: Error, CustomStringConvertible, Sendable {
    private enum Code: Sendable { case notExecutable, notOnPath, system, invalid }
    private let code: Code
    public let description: String

    /// The program was named but cannot be run at all (missing, not executable, not on PATH): fixing the
    /// command fixes it, retrying does not.
    public var isMissingProgram: Bool { code == .notExecutable || code == .notOnPath }

    static func notExecutable(_ path: String) -> SubprocessError {
        SubprocessError(code: .notExecutable, description: "\(path) is not an executable file")
    }
    static func notOnPath(_ program: String, _ path: String) -> SubprocessError {
        SubprocessError(code: .notOnPath, description: "\(program) is not on PATH (\(path))")
    }
    static func system(_ what: String, _ error: Int32) -> SubprocessError {
        SubprocessError(code: .system, description: "\(what) failed: \(String(cString: strerror(error)))")
    }
    static func invalid(_ message: String) -> SubprocessError { SubprocessError(code: .invalid, description: message) }
}
