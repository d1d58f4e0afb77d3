/// How many replicas must hold a write before it counts as confirmed, and how long to wait.
///
/// Replication is asynchronous: a primary answers a write before any replica has it, and a
/// failover in that window promotes a replica without it. Waiting for `replicas`
/// acknowledgements (`WAIT`) narrows what a failover can lose to writes whose confirmation did
/// not come; it does not make a write durable on disk (that is `WAITAOF`, Redis 7.2, not used:
/// the servers this project is tested on are 7.0).
public struct ReplicaConfirmation: Sendable, Hashable {
    public var replicas: Int
    public var timeout: Duration

    public init(replicas: Int, timeout: Duration) {
        precondition(replicas > 0 && timeout > .zero)
        self.replicas = replicas
        self.timeout = timeout
    }
}

/// A script's reply with what replication said of its writes.
public struct ConfirmedReply: Sendable {
    public var reply: RESPValue
    /// Replicas that acknowledged the writes; nil when the script wrote nothing (not asked).
    public var acknowledgedBy: Int?
    /// False only when the script wrote and fewer replicas than asked acknowledged in time:
    /// the write is on the primary and may be lost to a failover.
    public var isConfirmed: Bool
}

extension RedisClientProtocol {
    /// Runs a script (EVALSHA, loading it on NOSCRIPT) and, when `wrote` says its reply means
    /// it wrote, `WAIT`s on the same connection for `confirmation.replicas` replicas.
    ///
    /// A script refused by a redirect (MOVED, ASK, TRYAGAIN, ...: it did not run) is sent again
    /// to the slot's owner, at most three times. An error while waiting for the confirmation
    /// is thrown as ``RedisError/Code/outcomeUnknown``: the script ran, its replication is unknown.
    public func evaluate(
        _ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument],
        confirming confirmation: ReplicaConfirmation, wrote: @escaping @Sendable (RESPValue) -> Bool
    ) async throws -> ConfirmedReply {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await withConnection(forKeys: keys) { connection in
                    let reply = try await connection.evaluate(script, keys: keys, arguments: arguments)
                    guard wrote(reply) else { return ConfirmedReply(reply: reply, acknowledgedBy: nil, isConfirmed: true) }
                    let acknowledged: Int
                    do {
                        acknowledged = try await connection.send(WAIT(replicas: confirmation.replicas, timeout: confirmation.timeout))
                    } catch {
                        throw RedisError(
                            .outcomeUnknown, "the command ran; waiting for its replication failed: \(RedisError.wrapping(error).message)",
                            underlying: RedisError.wrapping(error))
                    }
                    return ConfirmedReply(reply: reply, acknowledgedBy: acknowledged, isConfirmed: acknowledged >= confirmation.replicas)
                }
            } catch let error as RedisError where error.isClusterRedirect && attempt < 3 {
                continue
            }
        }
    }
}
