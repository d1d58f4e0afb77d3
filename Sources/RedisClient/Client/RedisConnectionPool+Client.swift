/// The single-server pool serves the client protocol: keys need no routing on one server.
extension RedisConnectionPool: RedisClientProtocol {
    public func execute(_ commands: [any RedisCommand]) async -> [Result<RESPValue, RedisError>] {
        await pipeline(commands.map(ErasedCommand.init))
    }

    @_specialize(where Command == XADD)
    public func pipeline<Command: RedisCommand>(_ commands: [Command]) async -> [Result<Command.Response, RedisError>] {
        guard !commands.isEmpty else { return [] }
        do {
            return try await pipelineCoalesced(commands).map(\.result)
        } catch {
            // One round trip carried them all: the failure hit every command of the pipeline.
            return Array(repeating: .failure(RedisError.wrapping(error)), count: commands.count)
        }
    }

    public func transaction(_ commands: [any RedisCommand]) async throws -> [RESPValue] {
        try await transaction(commands.map(\.arguments))
    }

    public func withConnection<T: Sendable>(
        forKeys keys: [RedisArgument], _ body: (RedisConnection) async throws -> T
    ) async throws -> T {
        try await withConnection(body)
    }

    public func withDedicatedConnection<T: Sendable>(
        forKeys keys: [RedisArgument], _ body: (RedisConnection) async throws -> T
    ) async throws -> T {
        var single = configuration
        single.reconnect.retryWindow = .zero
        return try await makeConnection(single).closing(after: body)
    }

    /// Nothing to keep up on one server: waits until the task is cancelled.
    public func run() async throws {
        while true { try await Task.sleep(for: .seconds(3600)) }
    }
}

extension RedisConnection {
    /// Runs `body` with this connection, then closes it, whether `body` returned or threw.
    func closing<T: Sendable>(after body: (RedisConnection) async throws -> T) async throws -> T {
        do {
            let result = try await body(self)
            await close()
            return result
        } catch {
            await close()
            throw error
        }
    }
}
