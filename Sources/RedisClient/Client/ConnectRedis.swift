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
///
/// With seeds (`?addr=`), an endpoint that answers as a standalone server is a configuration
/// error (``RedisError/Code/invalidConfiguration``): the seeds are for finding a cluster, and a
/// pool for one server uses the URL's endpoint only. Taken as "not a cluster", a URL whose host
/// was down and whose seed was a standalone server connected to the host that was down, seeds
/// ignored (a trial expected them to be a fallback).
public func isClusterEnabled(_ configuration: RedisConfiguration) async throws -> Bool {
    var firstError: (any Error)?
    for endpoint in [configuration.endpoint] + configuration.seeds {
        var single = configuration
        single.endpoint = endpoint
        single.seeds = []
        let info: [String: String]
        do {
            let connection = try RedisConnection(configuration: single)
            info = try await connection.send(INFO(section: "cluster"))
            await connection.close()
        } catch {
            firstError = firstError ?? error
            continue
        }
        let enabled = info["cluster_enabled"] == "1"
        if !enabled && !configuration.seeds.isEmpty {
            throw RedisError(
                .invalidConfiguration,
                "\(endpoint) answers as a standalone server (cluster_enabled:0), but addr= names further Redis Cluster seeds: give one server's URL alone (a replica that takes over is reached through a name that moves to it), or cluster=yes for a cluster")
        }
        return enabled
    }
    throw firstError ?? RedisError(.invalidConfiguration, "no Redis endpoint configured")
}
