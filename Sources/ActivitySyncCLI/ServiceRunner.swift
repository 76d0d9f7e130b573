import Foundation
import Logging
import ServiceLifecycle
import Telemetry
import UnixSignals

/// Runs a long-lived role (scheduler, worker) the way every role runs: beside the health and metrics server when
/// a port is given, stopping gracefully on SIGTERM or SIGINT.
enum ServiceRunner {
    /// - Parameters:
    ///   - service: the role's service.
    ///   - metricsPort: serve `/healthz`, `/readyz` and `/metrics` here (0 picks a port, printed as
    ///     `metrics=URL`); nil serves nothing.
    static func run(
        _ service: any Service, metricsPort: Int?, readiness: Readiness, logger: Logger
    ) async throws {
        var services: [any Service] = [service]
        if let metricsPort {
            let telemetry = TelemetryServer(
                configuration: TelemetryConfiguration(port: metricsPort), readiness: readiness,
                registry: MetricsBootstrap.prometheus(), logger: logger)
            services.append(telemetry)
            Task {
                let port = await telemetry.boundPort()
                print("metrics=http://127.0.0.1:\(port)/metrics")
                fflush(nil)
            }
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
