import Hummingbird
import RedisClient

/// `GET /healthz`: 200 when Redis answers a PING as a primary, 503 when it does not (or answers
/// as a replica, where every write would meet READONLY).
///
/// It probes with the client's probe (``RedisClientProtocol/probe()``): on a pool, one connection
/// reused from probe to probe, which tries to connect once with a short timeout, where the
/// pool's connections keep retrying for their reconnect window; on a cluster, every primary.
public struct HealthCheck: Sendable {
    private let pool: any RedisClientProtocol

    public init(pool: any RedisClientProtocol) {
        self.pool = pool
    }

    /// nil when Redis answers, else the reason.
    public func check() async -> String? {
        guard let error = await pool.probe() else { return nil }
        return error.code.isServerError ? error.message : "\(error.code)"
    }

    func response(service: String) async -> Response {
        if let reason = await check() {
            return JSONResponse.encode(["status": "unavailable", "service": service, "redis": reason], status: .serviceUnavailable)
        }
        return JSONResponse.encode(["status": "ok", "service": service, "redis": "ok"])
    }
}
