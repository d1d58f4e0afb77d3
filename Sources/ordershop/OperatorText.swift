import OrderShop
import RedisClient

/// What an operations command says of a Redis error: Redis's reply without the script's sha
/// and line, and, for a server that answers as a replica, what to do. A trial ran `dlq replay`
/// and `rebuild` against a primary demoted by a failover: they printed "READONLY You can't write
/// against a read only replica. script: d759ce07..., on @user_script:22." or "...; run it again",
/// and running it again failed the same way.
enum OperatorText {
    /// `redis`: the options the command connected with, to name the user a NOPERM refused.
    static func describe(_ error: RedisError, redis: RedisOptions? = nil) -> String {
        // A server error's message starts with its code already ("READONLY You can't ...").
        let text = error.code.isServerError ? ShopError.withoutScriptLocation(error.message) : "\(error.code): \(error.message)"
        switch error.code {
        case .readOnly:
            return text
                + " (the server answers as a replica: it wrote nothing; point --url or REDIS_URL at the primary, or at a name that follows a failover; on a Redis Cluster, run it again once the failover is over)"
        case .noPermission:
            return text + permissionAdvice(redis.flatMap { try? $0.configuration() })
        // A review: `dlq list` with `?cluster=no` on a cluster node printed Redis's bare
        // "MOVED 1234 h:p" for a stream of another node's slots.
        // In cluster mode proper a redirect reaches here only when the client gave up following
        // them (a slot moving back and forth while it ran): no cluster=no to leave out then.
        case .moved, .ask:
            guard redis.flatMap({ try? $0.configuration() })?.clusterMode == .disabled else {
                return text + " (the key's slot moved between nodes of the Redis Cluster while the command ran, more often than the client follows: the call refused did not run; run it again)"
            }
            return text
                + " (the key is served by another node of a Redis Cluster, and cluster=no makes this command use one node alone: the call refused did not run; leave cluster=no out of the URL to reach the whole cluster)"
        // Trial N: at the limit `trim`, `snapshot` and `rebuild` said "run it again", which
        // failed the same way, while the services' 503s named `trim` as the way out.
        case .outOfMemory:
            return text
                + " (Redis is full: its maxmemory is reached and it refuses every write that may grow memory, which a snapshot, a trim's snapshot and a rebuild start with, so none can free memory now; raise maxmemory (CONFIG SET maxmemory, or the managed service's setting), then run it again: what it had not written is not applied)"
        default:
            return text
        }
    }

    /// What a NOPERM means to an operator: which user Redis refused, and which user the
    /// shipped ACL file gives the operations commands. Trial J: a CRM worker's user running
    /// `trim` was told "run it again", and `status` printed Redis's NOPERM alone.
    static func permissionAdvice(_ configuration: RedisConfiguration?) -> String {
        let user = configuration.map { "user '\($0.authentication?.username ?? "default")'" } ?? "this user"
        return "; Redis's ACL does not let \(user) do that, and run again as that user it fails the same way: run the operations commands as a user with the operations role (ordershop-admin in deploy/redis/users.acl)"
    }

    /// A note for stderr when `pool`'s server answers as a replica (the URL names a demoted
    /// primary): what was read there is the replica's and may lag the primary's. Trials found
    /// `status` and then `dlq list` printing a replica's figures without a word.
    static func replicaNote(_ pool: RedisConnectionPool, read what: String) async -> String? {
        guard let error = await pool.probe(), error.code == .readOnly else { return nil }
        return "note: \(pool.configuration.endpoint): \(error.message); \(what) its own and may lag the primary's\n"
    }

    /// A note for stderr when `pool`'s server is a node of a Redis Cluster that `?cluster=no`
    /// told the command to read alone: what it shows is that node's keys, not the cluster's (a
    /// trial found `status` showing a third of the streams without a word).
    static func clusterNodeNote(_ pool: RedisConnectionPool, read what: String) async -> String? {
        guard pool.configuration.clusterMode == .disabled,
            let info = try? await pool.send(INFO(section: "cluster")), info["cluster_enabled"] == "1"
        else { return nil }
        return "note: \(pool.configuration.endpoint) is a node of a Redis Cluster read alone (cluster=no): \(what) its own slots' only; leave cluster=no out for the whole cluster\n"
    }

    /// `error`, a Redis error as ``describe(_:)`` words it (ArgumentParser prints it as "Error: ...").
    static func readable(_ error: any Error, redis options: RedisOptions? = nil) -> any Error {
        guard let redis = error as? RedisError else { return error }
        return Described(description: describe(redis, redis: options))
    }

    /// Runs an operations command's work; when Redis cannot be reached or refuses this process
    /// (its password, its certificate), the error names the server, without the password, as
    /// `serve` says it (``RedisUnusable``): `status`, `trim` and `dlq` printed "connectionRefused:
    /// connection refused by H:P" or Redis's bare "WRONGPASS ..." (trial H).
    static func namingRedis<T>(_ redis: RedisOptions, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RedisError where reaching.contains(error.code) {
            throw RedisUnusable(redis: (try? redis.configuration().redactedDescription) ?? "the configured Redis", error: error)
        } catch let error as RedisError where error.code == .noPermission || error.code == .moved || error.code == .ask {
            throw Described(description: describe(error, redis: redis))
        }
    }

    /// Errors of reaching Redis or being let in, not of what a command asked.
    static let reaching: Set<RedisError.Code> = [
        .connectionRefused, .hostNotFound, .connectTimeout, .wrongPassword, .noAuth, .handshakeRefused, .tlsVerifyFailed, .tlsHostnameMismatch,
        .tlsHandshakeFailed, .tlsConfiguration,
    ]

    struct Described: Error, CustomStringConvertible {
        let description: String
    }
}
