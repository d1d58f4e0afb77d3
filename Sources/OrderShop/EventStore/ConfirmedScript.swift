import RedisClient

extension RedisClientProtocol {
    /// Runs a command script; with a `confirmation` (`--confirm-replicas`), a script whose reply
    /// says it wrote (`wrote`) answers only once the replicas have its writes, and throws
    /// ``ShopError/unconfirmed(acknowledged:wanted:)`` (503, "may have been applied") when they
    /// did not in time. A refusal wrote nothing and does not wait.
    func runCommandScript(
        _ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument],
        confirmation: ReplicaConfirmation?, wrote: @escaping @Sendable (RESPValue) -> Bool
    ) async throws -> RESPValue {
        guard let confirmation else { return try await evaluate(script, keys: keys, arguments: arguments) }
        let confirmed = try await evaluate(script, keys: keys, arguments: arguments, confirming: confirmation, wrote: wrote)
        guard confirmed.isConfirmed else {
            throw ShopError.unconfirmed(acknowledged: confirmed.acknowledgedBy ?? 0, wanted: confirmation.replicas)
        }
        return confirmed.reply
    }
}
