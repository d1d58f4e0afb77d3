import LocalRedis
import RedisClient

/// Starts a local Redis Cluster for one test, gives it a cluster client whose topology
/// refresh loop runs as a child task, and stops both afterwards (the nodes by pid).
public func withLocalCluster<T: Sendable>(
    _ options: LocalRedisCluster.Options = .init(),
    client tweak: (inout RedisClusterConfiguration) -> Void = { _ in },
    _ body: (LocalRedisCluster, RedisClusterClient) async throws -> T
) async throws -> T {
    let cluster = try await LocalRedisCluster(options)
    do {
        var configuration = cluster.configuration
        tweak(&configuration)
        let client = try RedisClusterClient(configuration: configuration)
        let result = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            return try await body(cluster, client)
        }
        await client.shutdown()
        await cluster.shutdown()
        return result
    } catch {
        await cluster.shutdown()
        throw error
    }
}
