import ArgumentParser
import Foundation
import Kafka
import Logging
import Sealing
import SyncModel

/// The options every command that talks to Kafka shares: `--bootstrap` (or `ACTIVITY_SYNC_BOOTSTRAP`),
/// `--topic-prefix` and `--log-level`, resolved in one place so every command says the same thing when one is
/// missing.
struct CommonOptions: ParsableArguments {
    static let bootstrapEnvironmentVariable = "ACTIVITY_SYNC_BOOTSTRAP"

    @Option(help: "Kafka bootstrap servers (host:port,…); default: $ACTIVITY_SYNC_BOOTSTRAP.")
    var bootstrap: String?

    @Option(help: "Prefix of activity-sync's topic names.")
    var topicPrefix = "activity-sync"

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: the command's own).")
    var logLevel: String?

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level \(logLevel): use trace, debug, info, notice, warning, error or critical")
        }
    }

    /// The bootstrap servers from `--bootstrap`, else the environment.
    func bootstrapServers() throws -> String {
        guard let servers = bootstrap ?? ProcessInfo.processInfo.environment[Self.bootstrapEnvironmentVariable],
            !servers.isEmpty
        else {
            throw ValidationError(
                "no Kafka bootstrap servers: pass --bootstrap host:port or set \(Self.bootstrapEnvironmentVariable)")
        }
        return servers
    }

    func kafka(clientId: String = "activity-sync") throws -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: try bootstrapServers(), clientId: clientId)
    }

    var topics: TopicNames { TopicNames(prefix: topicPrefix) }

    /// Sends every log to stderr (stdout carries the command's output) at `--log-level`, else `defaultLevel`,
    /// and returns a logger labelled `label`. Call once per process, before anything logs.
    func bootstrapLogging(_ label: String, defaultLevel: Logger.Level) -> Logger {
        let level = logLevel.flatMap(Logger.Level.init(rawValue:)) ?? defaultLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

/// `--sealing-key-file` (or `ACTIVITY_SYNC_SEALING_KEY_FILE`).
struct SealingKeyOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "File with the sealing key(s): base64 of 32 bytes, or `id:base64` lines (first = current); "
                + "default: $ACTIVITY_SYNC_SEALING_KEY_FILE."))
    var sealingKeyFile: String?

    /// The loaded keys; nil when none is configured and `required` is false.
    func sealer(required: Bool) throws -> Sealer? {
        let sealer: Sealer?
        do {
            sealer = try Sealer.load(keyFile: sealingKeyFile)
        } catch {
            throw ValidationError("\(error)")
        }
        if required && sealer == nil {
            throw ValidationError(
                "no sealing key: pass --sealing-key-file F or set \(Sealer.keyFileEnvironmentVariable) (generate a "
                    + "key with `head -c 32 /dev/urandom | base64 > F`)")
        }
        return sealer
    }

    func requiredSealer() throws -> Sealer {
        // `sealer(required: true)` never returns nil.
        try sealer(required: true)!
    }
}
