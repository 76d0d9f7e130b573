import Hummingbird
public import Logging
import Metrics
public import Prometheus
public import ServiceLifecycle
import Synchronization

/// Whether a process is ready for traffic, as `/readyz` reports it.
///
/// Each service registers the components it needs (the scheduler: its first assignment loaded and its producer
/// up) and flips them; the process is ready when all are. Liveness (`/healthz`) is separate on purpose: a
/// scheduler waiting for a rebalance is alive but not ready, and must not be restarted for it.
public final class Readiness: Sendable {
    private let state = Mutex<[String: Bool]>([:])

    public init(components: [String] = []) {
        state.withLock { state in for component in components { state[component] = false } }
    }

    /// Marks a component ready or not; unknown components are added.
    public func set(_ component: String, ready: Bool) {
        state.withLock { $0[component] = ready }
    }

    /// True when every registered component is ready (and at least one is registered).
    public var isReady: Bool { state.withLock { !$0.isEmpty && $0.values.allSatisfy { $0 } } }

    /// The components not ready yet, for `/readyz`'s body.
    public var pending: [String] { state.withLock { $0.filter { !$0.value }.keys.sorted() } }
}

/// Process-wide metrics setup: swift-metrics can be bootstrapped once per process, so every service and test
/// shares one Prometheus registry through here.
public enum MetricsBootstrap {
    private static let registry = Mutex<PrometheusCollectorRegistry?>(nil)

    /// Bootstraps swift-metrics with a Prometheus factory the first time; returns the shared registry.
    public static func prometheus() -> PrometheusCollectorRegistry {
        registry.withLock { existing in
            if let existing { return existing }
            let created = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: created)
            factory.defaultDurationHistogramBuckets = [
                .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
                .seconds(10), .seconds(30), .seconds(60),
            ]
            MetricsSystem.bootstrap(factory)
            existing = created
            return created
        }
    }
}

/// Configuration of the health and metrics endpoint.
public struct TelemetryConfiguration: Sendable {
    public var host = "0.0.0.0"
    /// 0 picks a free port (tests); read it back with ``TelemetryServer/boundPort()``.
    public var port = 9090

    public init(host: String = "0.0.0.0", port: Int = 9090) {
        self.host = host
        self.port = port
    }
}

/// A small HTTP server for orchestrators and Prometheus: `/healthz` (the process is alive), `/readyz`
/// (``Readiness``) and `/metrics` (Prometheus text exposition of the shared registry).
///
/// A `Service`, so it starts and stops with the scheduler or worker in one `ServiceGroup`.
public struct TelemetryServer: Service {
    private let configuration: TelemetryConfiguration
    private let readiness: Readiness
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger
    private let portWaiters: PortWaiters

    public init(
        configuration: TelemetryConfiguration, readiness: Readiness,
        registry: PrometheusCollectorRegistry = MetricsBootstrap.prometheus(), logger: Logger
    ) {
        self.configuration = configuration
        self.readiness = readiness
        self.registry = registry
        self.logger = logger
        self.portWaiters = PortWaiters()
    }

    public func run() async throws {
        let router = Router()
        let readiness = readiness
        let registry = registry
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/readyz") { _, _ -> Response in
            if readiness.isReady {
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
            }
            let body = "not ready: \(readiness.pending.joined(separator: ", "))\n"
            return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("/metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(
                status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        let waiters = portWaiters
        let logger = logger
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("telemetry listening", metadata: ["port": "\(port)"])
                waiters.resolve(port)
            },
            logger: logger)
        try await app.run()
    }

    /// The port the server listens on, once it does (useful with port 0).
    public func boundPort() async -> Int { await portWaiters.wait() }
}

/// Hands the bound port to whoever asks, before or after the server is up.
final class PortWaiters: Sendable {
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))

    func resolve(_ port: Int) {
        let waiters = state.withLock { state in
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    func wait() async -> Int {
        await withCheckedContinuation { continuation in
            let port = state.withLock { state -> Int? in
                if let port = state.port { return port }
                state.waiters.append(continuation)
                return nil
            }
            if let port { continuation.resume(returning: port) }
        }
    }
}
