/// Why an external integration could not be registered, set up or run: what went wrong and what to do.
///
/// Inside a worker's sync these become `IntegrationError` `.transient` (the job's sync failed, the
/// next tick retries); in the CLI commands they are printed for the operator. Messages never contain a config
/// value: output excerpts are redacted first.
public struct ExternalIntegrationError: Error, CustomStringConvertible, Sendable, Hashable {
    private enum Code: Hashable, Sendable {
        case cannotStart
        case failed
        case badOutput
        case invalidSpec
        case invalidManifest
    }

    private let code: Code
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// The program could not be started (missing, not executable).
    public static func cannotStart(_ why: String) -> Self {
        Self(.cannotStart, "cannot start the integration: \(why)")
    }

    /// The program ran but the run failed (non-zero exit, signal, timeout, output limit, cancellation).
    public static func failed(_ why: String) -> Self { Self(.failed, why) }

    /// The program printed something that is not the contract's JSON messages.
    public static func badOutput(_ why: String) -> Self { Self(.badOutput, why) }

    /// `spec` printed no usable spec.
    public static func invalidSpec(_ why: String) -> Self {
        Self(.invalidSpec, "invalid spec: \(why)")
    }

    /// The integrations file cannot be read or names an integration badly.
    public static func invalidManifest(_ why: String) -> Self { Self(.invalidManifest, why) }

}
