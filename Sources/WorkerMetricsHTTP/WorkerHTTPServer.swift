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

/// `stream_worker_redis_up`: 1 when the worker's Redis is usable by the probe `/healthz` uses
/// (``Health/redisProblem(_:)``: it answers, and as a primary), 0 when not; kept by a probe in
/// the background (``WorkerHTTPServer/run()``), so that a scrape never waits on Redis.
///
/// Why: a worker waiting for Redis at start served an empty `/metrics` (its series are made once
/// its subscriptions run), and one whose Redis went away served its last figures as if all were
/// well (a trial). Why in the background: probed at each scrape, a frozen Redis held every scrape
/// for the probe's 2-s timeout, one after another on the probe's connection, past Prometheus's
/// 10-s scrape timeout with a few scrapers and health checks (a review).
public final class RedisUpGauge: Sendable {
    /// -1 until the first probe has ended.
    private let value = Atomic<Int>(-1)

    public init() {}

    /// Says Redis is not usable, without probing (a process still waiting for it).
    public func markDown() {
        value.store(0, ordering: .relaxed)
    }

    /// Probes once and keeps the result.
    public func probe(_ client: any RedisClientProtocol) async {
        value.store(await client.probe() == nil ? 1 : 0, ordering: .relaxed)
    }

    /// Probes every `interval` until the task is cancelled (a probe under way ends first: at
    /// most its 2-s timeout).
    func keepProbing(_ client: any RedisClientProtocol, every interval: Duration) async {
        while !Task.isCancelled {
            await probe(client)
            do { try await Task.sleep(for: interval) } catch { return }
        }
    }

    /// Its exposition lines; none before the first probe has ended.
    var exposition: [UInt8] {
        let up = value.load(ordering: .relaxed)
        guard up >= 0 else { return [] }
        return Array(
            "# HELP stream_worker_redis_up Whether the worker's Redis is usable (1) or not (0), as its /healthz probe, every few seconds, finds it.\n# TYPE stream_worker_redis_up gauge\nstream_worker_redis_up \(up)\n".utf8)
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
    let redisUp = RedisUpGauge()
    /// How often ``redisUp`` probes Redis.
    let redisProbeInterval: Duration
    /// Its deadlines and connection ceiling (``HTTPServerLimits/monitoring``).
    let limits: HTTPServerLimits
    /// What keeps the process from its work although Redis answers (its start-up checks not
    /// passed yet): `/healthz` answers 503 with it. nil: nothing.
    let startupProblem: @Sendable () -> String?

    /// Creating the server installs the Prometheus backend, so create it before the workers:
    /// metrics made earlier would go to the default (no-op) backend.
    ///
    /// - Parameter onListening: called with the bound port once the server listens (a failed
    ///   bind throws from ``run()`` instead).
    public init(
        port: Int, host: String = "0.0.0.0", service: String = "worker", client: any RedisClientProtocol, logger: Logger,
        redisProbeInterval: Duration = .seconds(5), limits: HTTPServerLimits = .monitoring,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }, startupProblem: @escaping @Sendable () -> String? = { nil }
    ) {
        _ = WorkerMetrics.registry
        self.startupProblem = startupProblem
        self.limits = limits
        self.redisProbeInterval = redisProbeInterval
        self.port = port
        self.host = host
        self.service = service
        self.client = client
        self.logger = logger
        self.onListening = onListening
    }

    /// The routes, for tests that drive them without a socket.
    ///
    /// - Parameter redisUp: what `/metrics` says of Redis (nothing until it has probed).
    public static func buildRouter(
        client: any RedisClientProtocol, service: String = "worker", redisUp: RedisUpGauge = RedisUpGauge()
    ) -> Router<BasicRequestContext> {
        buildRouter(redisProblem: { await Health.redisProblem(client) }, service: service, redisUp: redisUp)
    }

    /// The same routes, `/healthz` answering what `redisProblem` says (nil: ok).
    public static func buildRouter(
        redisProblem: @escaping @Sendable () async -> String?, service: String, redisUp: RedisUpGauge
    ) -> Router<BasicRequestContext> {
        let registry = WorkerMetrics.registry
        let router = Router()
        router.add(middleware: ReadOnlyRoutes(paths: ["/metrics", "/healthz", "/livez"]))
        let metrics: @Sendable () -> Response = {
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            buffer += redisUp.exposition
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        let health: @Sendable () async -> Response = { Health.response(service: service, problem: await redisProblem()) }
        router.get("/metrics") { _, _ in metrics() }
        router.get("/healthz") { _, _ in await health() }
        // HEAD: GET's status and headers without the body (some uptime checkers send it; it was 404).
        router.head("/metrics") { _, _ in metrics().createHeadResponse() }
        router.head("/healthz") { _, _ in await health().createHeadResponse() }
        router.get("/livez") { _, _ in Health.liveResponse(service: service) }
        router.head("/livez") { _, _ in Health.liveResponse(service: service).createHeadResponse() }
        return router
    }

    public func run() async throws {
        let port = self.port
        let onListening = self.onListening
        let app = Application(
            router: Self.buildRouter(
                redisProblem: { [client, startupProblem] in await Health.redisProblem(client) ?? startupProblem() }, service: service, redisUp: redisUp),
            server: .http1KeepingConnectionRules(limits: limits),
            configuration: limits.applicationConfiguration(address: .hostname(host, port: port)), onServerRunning: { await onListening($0.localAddress?.port ?? port) },
            logger: logger)
        let (redisUp, client, interval) = (self.redisUp, self.client, redisProbeInterval)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await redisUp.keepProbing(client, every: interval) }
            // The server ends (a graceful shutdown, or a failed bind): the probing with it.
            defer { group.cancelAll() }
            try await app.run()
        }
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

    /// The `/livez` answer: 200 `{"service":"<name>","status":"ok"}` whenever the process can
    /// answer, whatever Redis does. Why: a liveness probe on `/healthz` restarted every pod of
    /// every role at once when Redis was away for a minute (maintenance, a stuck failover), and
    /// their restart backoff (up to 5 minutes) then delayed recovery after Redis came back (a
    /// review of deploy/). Readiness keeps `/healthz`.
    public static func liveResponse(service: String) -> Response {
        let object = ["status": "ok", "service": service]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
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
