import Logging
import RedisClient
import StreamWorker

/// Redis at start-up, before a process takes on work: a worker joins its groups only once Redis
/// answers with its credentials.
public enum RedisReadiness {
    /// Returns once Redis answers (the client's probe: as a primary; every primary of a cluster). While
    /// it cannot be reached it logs once and keeps trying with the reconnect backoff (Redis may
    /// start after us); what waiting cannot fix (a refused password, a certificate that fails
    /// verification, any other error reply) throws ``RedisUnusable`` at once. Cancellation ends
    /// the wait.
    public static func wait(for client: any RedisClientProtocol, at configuration: RedisConfiguration, logger: Logger) async throws {
        try await retrying(configuration, logger: logger) {
            guard let error = await client.probe() else { return .success(()) }
            // NOPERM: the ACL user may not PING, but it is authenticated, which is what counts here.
            return error.code == .noPermission ? .success(()) : .failure(error)
        }
    }

    /// Returns once `client` answers, a replica included (a reader such as the dashboard may
    /// read one; ``wait(for:at:logger:)`` waits for a primary), waiting the same way while it
    /// cannot be reached; a refused password or certificate throws ``RedisUnusable`` at once.
    ///
    /// A Redis Cluster answers once its topology is discovered (with the credentials), not once
    /// every primary answers: a reader shows a dead primary as not read, and the probe of a
    /// stale map would have PINGed a primary that a failover replaced for ever (a review).
    public static func waitUntilAnswering(_ client: any RedisClientProtocol, at configuration: RedisConfiguration, logger: Logger) async throws {
        try await retrying(configuration, logger: logger) {
            if let cluster = client as? RedisClusterClient {
                do {
                    try await cluster.connect()
                    return .success(())
                } catch let error as RedisError {
                    return .failure(error)
                } catch {
                    return .failure(RedisError(.io, "\(error)"))
                }
            }
            guard let error = await client.probe() else { return .success(()) }
            return error.code == .noPermission || error.code == .readOnly ? .success(()) : .failure(error)
        }
    }

    /// One look at Redis before a server starts listening, for at most `patience`: throws
    /// ``RedisUnusable`` when Redis answers but refuses this process (a wrong password, a
    /// certificate that fails verification), so that the process says so in one line and exits
    /// without first logging that it listens; returns when Redis answers, or cannot be reached
    /// (yet) within `patience`: then the server starts and answers 503 until it can.
    public static func refuseIfUnusable(
        _ client: any RedisClientProtocol, at configuration: RedisConfiguration, patience: Duration = .seconds(2)
    ) async throws {
        let failure: RedisError? = await first(of: { await client.probe() }, orAt: .now + patience, else: nil)
        guard let failure, failure.code != .noPermission, failure.code != .cancelled, !isWorthWaiting(failure) else { return }
        throw RedisUnusable(redis: configuration.redactedDescription, error: failure)
    }

    /// ``connectRedis(_:maximumConnections:logger:)`` (a pool for one server, a cluster client
    /// for a Redis Cluster), waiting as ``wait(for:at:logger:)`` does while the endpoint cannot be
    /// reached to tell which it is.
    public static func connect(
        _ configuration: RedisConfiguration, maximumConnections: Int, logger: Logger
    ) async throws -> any RedisClientProtocol {
        var decided = configuration
        decided.clusterMode = try await isCluster(configuration, logger: logger) ? .enabled : .disabled
        return try await retrying(configuration, logger: logger) {
            do {
                return .success(try await connectRedis(decided, maximumConnections: maximumConnections, logger: logger))
            } catch let error as RedisError {
                return .failure(error)
            } catch {
                return .failure(RedisError(.io, "\(error)"))
            }
        }
    }

    /// Whether `configuration` names a Redis Cluster (``usesRedisCluster(_:)``), waiting as
    /// ``wait(for:at:logger:)`` does while the endpoint cannot be reached to tell.
    public static func isCluster(_ configuration: RedisConfiguration, logger: Logger) async throws -> Bool {
        // Asked with one connect attempt: with the reconnect window a Redis that is not there
        // yet was said to be awaited only after that window (~6 s; a trial).
        var asking = configuration
        asking.reconnect.retryWindow = .zero
        return try await retrying(configuration, logger: logger) {
            do {
                return .success(try await usesRedisCluster(asking))
            } catch let error as RedisError {
                return .failure(error)
            } catch {
                return .failure(RedisError(.io, "\(error)"))
            }
        }
    }

    /// Runs `attempt` until it succeeds, waiting with the reconnect backoff while its error is
    /// worth waiting for (logged once), throwing ``RedisUnusable`` for any other.
    private static func retrying<T>(
        _ configuration: RedisConfiguration, logger: Logger, _ attempt: () async -> Result<T, RedisError>
    ) async throws -> T {
        var attempts = 0
        while true {
            let error: RedisError
            switch await attempt() {
            case .success(let value):
                if attempts > 0 { logger.info("Redis answers", metadata: ["redis": "\(configuration.redactedDescription)"]) }
                return value
            case .failure(let failure):
                error = failure
            }
            guard isWorthWaiting(error) else { throw RedisUnusable(redis: configuration.redactedDescription, error: error) }
            if attempts == 0 {
                logger.warning("waiting for Redis", metadata: ["redis": "\(configuration.redactedDescription)", "error": "\(error)"])
            }
            attempts += 1
            try await Task.sleep(for: configuration.reconnect.backoff(attempt: attempts))
        }
    }

    /// Errors of a Redis that is not there yet, is loading its data, or is a replica (the probe's
    /// answer while a failover moves the name to the promoted node; a URL that names a replica
    /// for good waits too, with the warning saying why).
    static func isWorthWaiting(_ error: RedisError) -> Bool {
        switch error.code {
        case .loading, .connectionRefused, .hostNotFound, .connectTimeout, .timeout, .connectionClosed, .outcomeUnknown, .io, .busy, .readOnly:
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

    public init(redis: String, error: RedisError) {
        self.redis = redis
        self.error = error
    }

    /// The error's own words (a server's reply, or what the client met: "connection refused by
    /// 127.0.0.1:6390"), without the client's code name.
    public var description: String { "cannot use Redis at \(redis): \(error.message)" }
}

extension RedisUnusable {
    /// Redis's ACL refuses the process's user what `refused` says ("write ... (reason); run
    /// it as ..."), in the words every start-up probe uses: "Redis's ACL does not let user 'u' ...".
    static func aclRefusal(at configuration: RedisConfiguration, _ refused: String) -> RedisUnusable {
        let user = configuration.authentication?.username ?? "default"
        return RedisUnusable(redis: configuration.redactedDescription, error: RedisError(.noPermission, "Redis's ACL does not let user '\(user)' \(refused)"))
    }
}
