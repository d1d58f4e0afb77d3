import RedisClient
import ServiceLifecycle

/// A Redis client's background upkeep (``RedisClientProtocol/run()``: a cluster client's topology
/// refresh) as a service of the process's group. List it first: a service group stops its
/// services in reverse order, so the client is kept up until the others have stopped.
public struct RedisClientService: Service {
    public let client: any RedisClientProtocol

    public init(_ client: any RedisClientProtocol) {
        self.client = client
    }

    /// Runs until the group's graceful shutdown or cancellation.
    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await client.run() }
        } catch is CancellationError {
            return
        }
    }
}
