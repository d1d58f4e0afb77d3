import RedisClient

extension RedisClientProtocol {
    /// Runs a command script; with a `confirmation` (`--confirm-replicas`), it answers only
    /// once the replicas hold what it answered on, and throws ``ShopError/unconfirmed(acknowledged:wanted:)``
    /// (503, "may have been applied") when they did not in time for a script that wrote
    /// (`wrote`), ``ShopError/unconfirmedRefusal(acknowledged:wanted:)`` (503, "not applied") for
    /// one that refused: its 404 or 409 may rest on a write a failover can still lose (a
    /// retried create finds the unconfirmed first attempt: "exists"). `barrier`: a key of the
    /// script's slot that a refusal writes so that `WAIT` covers that state (see
    /// ``RedisClientProtocol/evaluate(_:keys:arguments:confirming:barrier:wrote:)``).
    /// `answersEarlierWrite`: a reply that wrote nothing but answers what an earlier attempt
    /// wrote (a keyed create's replay): unconfirmed, it "may have been applied" too.
    func runCommandScript(
        _ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument],
        confirmation: ReplicaConfirmation?, barrier: RedisArgument, wrote: @escaping @Sendable (RESPValue) -> Bool,
        answersEarlierWrite: @Sendable (RESPValue) -> Bool = { _ in false }
    ) async throws -> RESPValue {
        do {
            return try await runScript(
                script, keys: keys, arguments: arguments, confirmation: confirmation, barrier: barrier, wrote: wrote, answersEarlierWrite: answersEarlierWrite)
        } catch let error as RedisError where error.code == .outcomeUnknown || error.code == .timeout {
            // Sent, and its answer lost or late: it may have run (``ShopError/mayHaveBeenApplied(_:)``).
            throw ShopError.mayHaveBeenApplied(error)
        }
    }

    private func runScript(
        _ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument],
        confirmation: ReplicaConfirmation?, barrier: RedisArgument, wrote: @escaping @Sendable (RESPValue) -> Bool,
        answersEarlierWrite: (RESPValue) -> Bool
    ) async throws -> RESPValue {
        guard let confirmation else { return try await evaluate(script, keys: keys, arguments: arguments) }
        let confirmed = try await evaluate(script, keys: keys, arguments: arguments, confirming: confirmation, barrier: barrier, wrote: wrote)
        guard confirmed.isConfirmed else {
            if confirmed.wrote || answersEarlierWrite(confirmed.reply) {
                throw ShopError.unconfirmed(acknowledged: confirmed.acknowledgedBy, wanted: confirmation.replicas)
            }
            throw ShopError.unconfirmedRefusal(acknowledged: confirmed.acknowledgedBy, wanted: confirmation.replicas)
        }
        return confirmed.reply
    }
}
