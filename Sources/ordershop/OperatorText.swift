import OrderShop
import RedisClient

/// What an operations command says of a Redis error: Redis's reply without the script's sha
/// and line, and, for a server that answers as a replica, what to do. A trial ran `dlq replay`
/// and `rebuild` against a primary demoted by a failover: they printed "READONLY You can't write
/// against a read only replica. script: d759ce07..., on @user_script:22." or "...; run it again",
/// and running it again failed the same way.
enum OperatorText {
    static func describe(_ error: RedisError) -> String {
        // A server error's message starts with its code already ("READONLY You can't ...").
        let text = error.code.isServerError ? ShopError.withoutScriptLocation(error.message) : "\(error.code): \(error.message)"
        guard error.code == .readOnly else { return text }
        return text
            + " (the server answers as a replica: it wrote nothing; point --url or REDIS_URL at the primary, or at a name that follows a failover; on a Redis Cluster, run it again once the failover is over)"
    }

    /// A note for stderr when `pool`'s server answers as a replica (the URL names a demoted
    /// primary): what was read there is the replica's and may lag the primary's. Trials found
    /// `status` and then `dlq list` printing a replica's figures without a word.
    static func replicaNote(_ pool: RedisConnectionPool, read what: String) async -> String? {
        guard let error = await pool.probe(), error.code == .readOnly else { return nil }
        return "note: \(pool.configuration.endpoint): \(error.message); \(what) its own and may lag the primary's\n"
    }

    /// `error`, a Redis error as ``describe(_:)`` words it (ArgumentParser prints it as "Error: ...").
    static func readable(_ error: any Error) -> any Error {
        guard let redis = error as? RedisError else { return error }
        return Described(description: describe(redis))
    }

    struct Described: Error, CustomStringConvertible {
        let description: String
    }
}
