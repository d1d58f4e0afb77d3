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
public struct HealthCheck: Sendable {
    private let pool: any RedisClientProtocol

    public init(pool: any RedisClientProtocol) {
        self.pool = pool
    }

    func response(service: String) async -> Response {
        Health.response(service: service, problem: await Health.redisProblem(pool))
    }
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
