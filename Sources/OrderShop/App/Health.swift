import Hummingbird
import RedisClient
import WorkerMetricsHTTP

/// `GET /healthz`: 200 when Redis answers a PING as a primary, 503 when it does not (or answers
/// as a replica, where every write would meet READONLY), in the body every process answers
/// (``Health``: the workers' too).
///
/// It probes with the client's probe (``RedisClientProtocol/probe()``): on a pool, one connection
/// reused from probe to probe, which tries to connect once with a short timeout, where the
/// pool's connections keep retrying for their reconnect window; on a cluster, every primary.
///
/// Until the service's check of the shop's partition layout (``ShopLayout/claim(in:)``) has
/// passed (``layout`` opened), 503 too, so that a readiness probe, a load balancer or `ordershop
/// demo` sends it nothing yet. Why: a service listens at once, its layout check beside it; the
/// demo, started when the gateway's `/healthz` said ok, read the layout before any process had
/// recorded it, took the shop for one partition, and expected no mail of the partitions'
/// streams (a cluster test in 6 partitions: 0 mails, "passed").
public struct HealthCheck: Sendable {
    private let pool: any RedisClientProtocol
    /// Opened by the layout check (``StartGate/arrive()``); open from the start for a service
    /// with none (msg keeps no entity; a test's context).
    public let layout: StartGate

    public init(pool: any RedisClientProtocol, layout: StartGate = StartGate(waitingFor: 0)) {
        self.pool = pool
        self.layout = layout
    }

    func response(service: String) async -> Response {
        let problem = await Health.redisProblem(pool)
        return Health.response(service: service, problem: problem ?? (layout.isOpen ? nil : Self.layoutPending))
    }

    public static let layoutPending = "starting: the shop's partition layout (\(ShopLayout.recordKey)) is not checked yet"
}

/// `GET /healthz` (``HealthCheck``: Redis usable) and `GET /livez` (the process answers:
/// ``Health/liveResponse(service:)``, for a liveness probe that must not restart a process for
/// Redis's absence), with 405 for other methods, on a service's router.
func addHealthRoutes(to router: Router<ShopRequestContext>, service: String, health: HealthCheck) {
    router.get("/healthz") { _, _ in await health.response(service: service) }
    router.get("/livez") { _, _ in Health.liveResponse(service: service) }
    addMethodNotAllowed(to: router, path: "/healthz", allowed: [.get])
    addMethodNotAllowed(to: router, path: "/livez", allowed: [.get])
}
