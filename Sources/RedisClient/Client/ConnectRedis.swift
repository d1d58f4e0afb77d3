import Logging

/// A client for the Redis that `configuration` names: a ``RedisClusterClient`` when it is a
/// Redis Cluster, else a ``RedisConnectionPool``.
///
/// ``RedisConfiguration/clusterMode`` decides: `enabled` and `disabled` force the choice;
/// `auto` (the default) asks the endpoint (then each of ``RedisConfiguration/seeds``) for
/// `INFO cluster` and takes `cluster_enabled:1` for a cluster. Run the client's
/// ``RedisClientProtocol/run()`` as a child task while it is used.
public func connectRedis(
    _ configuration: RedisConfiguration, maximumConnections: Int = 8, logger: Logger? = nil
) async throws -> any RedisClientProtocol {
    func cluster() throws -> RedisClusterClient {
        var cluster = try RedisClusterConfiguration(configuration)
        cluster.connectionsPerNode = maximumConnections
        return try RedisClusterClient(configuration: cluster, logger: logger)
    }
    if try await usesRedisCluster(configuration) { return try cluster() }
    return try RedisConnectionPool(configuration: configuration, maximumConnections: maximumConnections, logger: logger)
}

/// Whether `configuration` names a Redis Cluster: forced by ``RedisConfiguration/clusterMode``,
/// or (`auto`) detected with ``isClusterEnabled(_:)``.
public func usesRedisCluster(_ configuration: RedisConfiguration) async throws -> Bool {
    switch configuration.clusterMode {
    case .enabled: true
    case .disabled: false
    case .auto: try await isClusterEnabled(configuration)
    }
}

/// `cluster_enabled:1` in `INFO cluster` of the first endpoint that answers (the URL's, then its seeds).
public func isClusterEnabled(_ configuration: RedisConfiguration) async throws -> Bool {
    var firstError: (any Error)?
    for endpoint in [configuration.endpoint] + configuration.seeds {
        var single = configuration
        single.endpoint = endpoint
        single.seeds = []
        do {
            let connection = try RedisConnection(configuration: single)
            let info = try await connection.send(INFO(section: "cluster"))
            await connection.close()
            return info["cluster_enabled"] == "1"
        } catch {
            firstError = firstError ?? error
        }
    }
    throw firstError ?? RedisError(.invalidConfiguration, "no Redis endpoint configured")
}
