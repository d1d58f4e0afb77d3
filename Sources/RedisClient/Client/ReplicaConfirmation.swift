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

/// A script's reply with what replication said of the state it answered on.
public struct ConfirmedReply: Sendable {
    public var reply: RESPValue
    /// The reply says the script wrote (the caller's `wrote`); false: it refused.
    public var wrote: Bool
    /// Replicas that acknowledged everything the primary had when the script ran.
    public var acknowledgedBy: Int
    /// False when fewer replicas than asked acknowledged in time. A write is then on the
    /// primary and may be lost to a failover; a refusal may rest on such a write (the retry of
    /// a create whose first answer was unconfirmed: "exists"), so a failover may change it.
    public var isConfirmed: Bool
}

extension RedisClientProtocol {
    /// Runs a script (EVALSHA, loading it on NOSCRIPT), then `WAIT`s on the same connection
    /// for `confirmation.replicas` replicas.
    ///
    /// A refusal (`wrote` false) is confirmed too: its 404 or 409 may rest on a write another
    /// connection made a moment before (the unconfirmed first attempt of a retried create).
    /// `WAIT` waits for the connection's replication offset, and which commands move it
    /// depends on the server: Redis 7.0 (7.0.15 tested) sets it after every command, but 7.2's
    /// `call()` only after a command that propagated, so there a `WAIT` after a refusal would
    /// speak of the connection's earlier writes. So a refusal first writes `barrier` (a `SET`
    /// with a one-minute expiry), whose offset covers everything the primary had when the
    /// script ran, on any version. `barrier` must be in the slot of `keys` (in a cluster) and
    /// writable by the caller's ACL user. The barrier and the `WAIT` go on the script's own
    /// session: when it ended meanwhile (a dropped socket; a `READONLY` on the barrier, the
    /// server demoted since), the answer is ``RedisError/Code/outcomeUnknown``, never a
    /// confirmation by another server (a chaos run once got one: a create replayed from a
    /// demoted primary's last moments, confirmed on the new primary, then lost).
    ///
    /// A script refused by a redirect (MOVED, ASK, TRYAGAIN, ...: it did not run) is sent again
    /// to the slot's owner within the cluster client's retry window (15 s by default, as for an
    /// unconfirmed command), 25 ms longer apart each time up to 400 ms: a slot being migrated
    /// answers TRYAGAIN until its keys are on one side, and an ASK is followed once the
    /// migration ends (three attempts at once gave up within a millisecond, and every command
    /// of a busy slot being resharded answered 503; twelve gave up after 1.65 s). An error while waiting for the confirmation
    /// is thrown as ``RedisError/Code/outcomeUnknown``: the script ran, its replication is unknown.
    public func evaluate(
        _ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument],
        confirming confirmation: ReplicaConfirmation, barrier: RedisArgument, wrote: @escaping @Sendable (RESPValue) -> Bool
    ) async throws -> ConfirmedReply {
        // A redirect (the slot is being moved: ASK, TRYAGAIN; a failover: CLUSTERDOWN) means the
        // script did not run: tried again for as long as the cluster client waits out a healing
        // cluster for an unconfirmed command. Twelve attempts (1.65 s) answered 503 during a
        // migration held for 6 s, where the unconfirmed command waited (trial I).
        let window = (self as? RedisClusterClient)?.configuration.retryWindow ?? .seconds(15)
        let giveUp = ContinuousClock.now + window
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await withConnection(forKeys: keys) { connection in
                    let reply = try await connection.evaluate(script, keys: keys, arguments: arguments)
                    let wroteSomething = wrote(reply)
                    let acknowledged: Int
                    do {
                        // On the script's own session, or not at all (``RedisConnection/sendInSession(_:)``):
                        // a reconnect between them would confirm another session's writes.
                        if !wroteSomething { _ = try await connection.sendInSession(SET(barrier, "1", expiry: .seconds(60))) }
                        acknowledged = try await connection.sendInSession(WAIT(replicas: confirmation.replicas, timeout: confirmation.timeout))
                    } catch let error as RedisError where error.code == .outOfMemory {
                        // A full Redis refused the barrier (WAIT is never refused so): the script
                        // wrote nothing and its answer cannot be confirmed. Said as what it is (a
                        // review: a keyed replay answered "may have been applied", a read "the
                        // connection to Redis was lost").
                        throw error
                    } catch {
                        throw RedisError(
                            .outcomeUnknown, "the command ran; waiting for its replication failed: \(RedisError.wrapping(error).message)",
                            underlying: RedisError.wrapping(error))
                    }
                    return ConfirmedReply(
                        reply: reply, wrote: wroteSomething, acknowledgedBy: acknowledged, isConfirmed: acknowledged >= confirmation.replicas)
                }
            } catch let error as RedisError where error.isClusterRedirect && ContinuousClock.now < giveUp {
                // 25 ms more each time, at most 400 ms: the end of a move is seen within 0.4 s.
                try await Task.sleep(for: .milliseconds(min(25 * attempt, 400)))
            }
        }
    }
}
