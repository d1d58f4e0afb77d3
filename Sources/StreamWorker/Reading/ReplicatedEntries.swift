import RedisClient

extension SubscriptionContext {
    /// With ``WorkerConfiguration/replicaConfirmation``: waits on `connection`, which just read
    /// or claimed entries, until the replicas have everything it did (so the entries too).
    /// Returns false when the drain started meanwhile: the entries stay pending to this consumer
    /// (the group reclaims them after a lease) and are not handed to handlers.
    ///
    /// - Parameter blockingReadOf: the last entry id of a read that blocked. WAIT counts the
    ///   writes of its own connection, and Redis 7.0 credits what a blocked XREADGROUP does
    ///   when an XADD wakes it to the XADD's client: WAIT after such a read returned at once
    ///   with a stopped replica (seen in `ReplicatedReadTests`). An `XCLAIM ... JUSTID` of the
    ///   last entry, to the consumer that holds it (nothing changes but its idle time), is a
    ///   write of this connection replicated after the entries.
    func entriesReplicated(on connection: RedisConnection, blockingReadOf lastID: String? = nil) async throws -> Bool {
        guard let confirmation = configuration.replicaConfirmation else { return true }
        if let lastID {
            _ = try await connection.sendInSession(XCLAIM(streamKey, group: group, consumer: consumer, ids: [lastID], justID: true))
        }
        var warned = false
        while true {
            // On the read's own session, or not at all: after a reconnect, WAIT would speak of
            // another session (perhaps on the new primary, which lacks these entries).
            let acknowledged = try await connection.sendInSession(WAIT(replicas: confirmation.replicas, timeout: confirmation.timeout))
            if acknowledged >= confirmation.replicas { return true }
            if drain.isFired { return false }
            if !warned {
                warned = true
                logger.warning(
                    "entries read are not yet on the replicas; they wait before any handler sees them (a failover now could lose them)",
                    metadata: ["acknowledged": "\(acknowledged)", "wanted": "\(confirmation.replicas)"])
            }
        }
    }
}
