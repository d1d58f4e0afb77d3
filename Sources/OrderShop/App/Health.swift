import Hummingbird
import RedisClient

/// `GET /healthz`: 200 when Redis answers a PING, 503 when it does not.
///
/// It uses its own connection, which tries to connect once with a short timeout: the pool's
/// connections keep retrying for their reconnect window, which is right for commands and wrong
/// for a probe that must answer quickly.
public struct HealthCheck: Sendable {
    private let connection: RedisConnection

    public init(configuration: RedisConfiguration) throws(RedisError) {
        var c = configuration
        c.reconnect.retryWindow = .zero
        c.timeouts.connect = .seconds(1)
        c.timeouts.command = .seconds(2)
        c.clientName = c.clientName ?? "ordershop-health"
        connection = try RedisConnection(configuration: c)
    }

    /// nil when Redis answers, else the reason.
    public func check() async -> String? {
        do {
            _ = try await connection.send(PING())
            return nil
        } catch let error as RedisError {
            return error.code.isServerError ? error.message : "\(error.code)"
        } catch {
            return "\(error)"
        }
    }

    func response(service: String) async -> Response {
        if let reason = await check() {
            return JSONResponse.encode(["status": "unavailable", "service": service, "redis": reason], status: .serviceUnavailable)
        }
        return JSONResponse.encode(["status": "ok", "service": service, "redis": "ok"])
    }
}
