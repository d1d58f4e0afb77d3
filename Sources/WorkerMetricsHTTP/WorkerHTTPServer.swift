import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import RedisClient
import ServiceLifecycle
import Synchronization

/// Installs the Prometheus backend for swift-metrics once per process.
public enum WorkerMetrics {
    private static let bootstrapped = Mutex<PrometheusCollectorRegistry?>(nil)

    /// The registry `/metrics` renders; bootstraps swift-metrics with it on first use.
    public static var registry: PrometheusCollectorRegistry {
        bootstrapped.withLock { existing in
            if let existing { return existing }
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            existing = registry
            return registry
        }
    }
}

extension WorkerMetrics {
    /// `stream_worker_redis_up`: 1 when the worker's Redis answers the probe `/healthz` uses
    /// (``Health/redisProblem(_:)``), 0 when it does not, measured at each scrape. Without it a
    /// worker waiting for Redis at start served an empty `/metrics` (its series are made once
    /// its subscriptions run), and one whose Redis went away served its last figures as if all
    /// were well (a trial).
    static func redisUp(_ up: Bool) -> [UInt8] {
        Array("# HELP stream_worker_redis_up Whether the worker's Redis answers (1) or not (0), at this scrape.\n# TYPE stream_worker_redis_up gauge\nstream_worker_redis_up \(up ? 1 : 0)\n".utf8)
    }
}

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` (503 when Redis cannot be reached,
/// or answers as a replica) for a worker process.
public struct WorkerHTTPServer: Service {
    let port: Int
    let host: String
    /// The process's name in its `/healthz` body (``Health``): `crm-worker`, say.
    let service: String
    let client: any RedisClientProtocol
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// Creating the server installs the Prometheus backend, so create it before the workers:
    /// metrics made earlier would go to the default (no-op) backend.
    ///
    /// - Parameter onListening: called with the bound port once the server listens (a failed
    ///   bind throws from ``run()`` instead).
    public init(
        port: Int, host: String = "0.0.0.0", service: String = "worker", client: any RedisClientProtocol, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        _ = WorkerMetrics.registry
        self.port = port
        self.host = host
        self.service = service
        self.client = client
        self.logger = logger
        self.onListening = onListening
    }

    /// The routes, for tests that drive them without a socket.
    public static func buildRouter(client: any RedisClientProtocol, service: String = "worker") -> Router<BasicRequestContext> {
        let registry = WorkerMetrics.registry
        let router = Router()
        router.add(middleware: ReadOnlyRoutes(paths: ["/metrics", "/healthz"]))
        let metrics: @Sendable () async -> Response = {
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            buffer += WorkerMetrics.redisUp(await client.probe() == nil)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        let health: @Sendable () async -> Response = { Health.response(service: service, problem: await Health.redisProblem(client)) }
        router.get("/metrics") { _, _ in await metrics() }
        router.get("/healthz") { _, _ in await health() }
        // HEAD: GET's status and headers without the body (some uptime checkers send it; it was 404).
        router.head("/metrics") { _, _ in await metrics().createHeadResponse() }
        router.head("/healthz") { _, _ in await health().createHeadResponse() }
        return router
    }

    public func run() async throws {
        let port = self.port
        let onListening = self.onListening
        let app = Application(
            router: Self.buildRouter(client: client, service: service), server: .http1KeepingConnectionRules(), configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { await onListening($0.localAddress?.port ?? port) }, logger: logger)
        try await app.run()
    }
}

/// Health checks shared by workers and services: one `/healthz` body for every process,
/// `{"redis":"ok","service":"<name>","status":"ok"}` (200) or
/// `{"redis":"<why not>","service":"<name>","status":"unavailable"}` (503). Workers answered
/// `{"status":"unhealthy","reason":...}` and services the form above, so a probe or dashboard
/// reading the body had to know which kind of process it asked.
public enum Health {
    /// Why Redis cannot serve the process, nil when it can, from the client's probe
    /// (``RedisClientProtocol/probe()``: a `HELLO` or `PING` with short timeouts, apart from the
    /// connections that carry commands, so that a busy pool cannot make a healthy process look
    /// dead; every primary of a Redis Cluster): "unreachable (<error code>)" for a server that
    /// did not answer, its reply for one that answered and cannot serve (a replica, where every
    /// write would meet READONLY; a server loading its data).
    public static func redisProblem(_ client: any RedisClientProtocol) async -> String? {
        guard let error = await client.probe() else { return nil }
        // The code only for a server that did not answer: the body is served unauthenticated,
        // and the error would name the Redis host.
        return error.code.isServerError ? error.message : "unreachable (\(error.code))"
    }

    /// The `/healthz` answer of the process `service` with that problem (nil: none).
    public static func response(service: String, problem: String?) -> Response {
        let object = ["status": problem == nil ? "ok" : "unavailable", "service": service, "redis": problem ?? "ok"]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Response(
            status: problem == nil ? .ok : .serviceUnavailable, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
