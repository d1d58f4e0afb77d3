import RedisClient

/// For commands that inspect every node's own keys (`ordershop status`): one small pool per
/// primary of a Redis Cluster, or the one server's pool. Streams and their group keys share a
/// hash tag (StreamKeys), so each primary answers for the streams it holds.
enum RedisNodePools {
    /// `serving`: only the primaries of the shards that serve one of these slots (nil: all).
    static func primaries(_ config: RedisConfiguration, serving slots: Set<HashSlot>? = nil) async throws -> [RedisConnectionPool] {
        guard try await usesRedisCluster(config) else { return [try RedisConnectionPool(configuration: config, maximumConnections: 2)] }
        return try primaries(of: try await discovered(try RedisClusterConfiguration(config)), serving: slots)
    }

    /// A pool per primary of the topology `client` has discovered (`serving` as above).
    static func primaries(of client: RedisClusterClient, serving slots: Set<HashSlot>? = nil) throws -> [RedisConnectionPool] {
        // Only shards with slots: a primary that died and was replaced stays listed in a shard of
        // its own, without slots, until the cluster forgets it (`status` named it "not read").
        let shards = client.shards.filter { shard in
            guard let slots else { return !shard.slots.isEmpty }
            return slots.contains { slot in shard.slots.contains { $0.contains(slot) } }
        }
        return try shards.compactMap { $0.primary.flatMap { client.address(of: $0) } }.map {
            try RedisConnectionPool(configuration: client.configuration.configuration(for: $0), maximumConnections: 2)
        }
    }

    /// A cluster client that has discovered the topology and stays connected (its ``RedisClusterClient/run()`` must run while it is used).
    static func connected(_ configuration: RedisClusterConfiguration) async throws -> RedisClusterClient {
        let client = try RedisClusterClient(configuration: configuration)
        do {
            try await client.connect()
        } catch {
            await client.shutdown()
            throw error
        }
        return client
    }

    /// A cluster client that has discovered the topology (its shards, where to reach each node)
    /// and closed its connections again: for commands that then reach the nodes one by one.
    static func discovered(_ configuration: RedisClusterConfiguration) async throws -> RedisClusterClient {
        let client = try await connected(configuration)
        await client.shutdown()
        return client
    }
}
