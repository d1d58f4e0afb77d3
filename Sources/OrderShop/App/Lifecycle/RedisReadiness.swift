import Logging
import RedisClient

/// Redis at start-up, before a process takes on work: a worker joins its groups only once Redis
/// answers with its credentials.
public enum RedisReadiness {
    /// Returns once Redis answers a PING (on the pool's probe connection). While it cannot be
    /// reached it logs once and keeps trying with the reconnect backoff (Redis may start after
    /// us); what waiting cannot fix (a refused password, a certificate that fails verification,
    /// any other error reply) throws ``RedisUnusable`` at once. Cancellation ends the wait.
    public static func wait(for pool: RedisConnectionPool, logger: Logger) async throws {
        var attempt = 0
        while true {
            guard let error = await pool.probe() else {
                if attempt > 0 { logger.info("Redis answers", metadata: ["redis": "\(pool.configuration.redactedDescription)"]) }
                return
            }
            // NOPERM: the ACL user may not PING, but it is authenticated, which is what counts here.
            if error.code == .noPermission { return }
            guard isWorthWaiting(error) else { throw RedisUnusable(redis: pool.configuration.redactedDescription, error: error) }
            if attempt == 0 {
                logger.warning("waiting for Redis", metadata: ["redis": "\(pool.configuration.redactedDescription)", "error": "\(error)"])
            }
            attempt += 1
            try await Task.sleep(for: pool.configuration.reconnect.backoff(attempt: attempt))
        }
    }

    /// Errors of a Redis that is not there yet, or is loading its data.
    static func isWorthWaiting(_ error: RedisError) -> Bool {
        switch error.code {
        case .loading, .connectionRefused, .hostNotFound, .connectTimeout, .timeout, .connectionClosed, .outcomeUnknown, .io, .busy:
            true
        default:
            false
        }
    }
}

/// Redis answered, but not in a way this process can work with (wrong password, TLS refused).
public struct RedisUnusable: Error, CustomStringConvertible {
    /// The server, without credentials.
    public let redis: String
    public let error: RedisError

    public var description: String { "cannot use Redis at \(redis): \(error)" }
}
