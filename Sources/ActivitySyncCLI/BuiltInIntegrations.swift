import GitHub
import IntegrationCatalog
import Logging
import SyncModel

/// The integrations compiled into the binary, which every ``IntegrationCatalog`` of the CLI starts from.
///
/// A second built-in integration is its module (a target in Package.swift that the CLI depends on) and one line in
/// ``all(github:logger:)``; its key is then reserved in integrations files, known to the scheduler and listed by
/// `integrations list` without another change.
enum BuiltInIntegrations {
    /// - Parameter github: the GitHub integration's configuration (API URL, OAuth app); the default for commands
    ///   that only read keys and specs.
    static func all(github: GitHubConfiguration = GitHubConfiguration(), logger: Logger) -> [any Integration] {
        [
            GitHubIntegration(configuration: github, logger: logger)
        ]
    }
}
