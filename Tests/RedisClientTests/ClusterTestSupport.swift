import LocalRedis
import RedisClient

extension LocalRedisCluster {
    /// A connection to node `index`.
    func connection(_ index: Int) throws -> RedisConnection {
        try RedisConnection(configuration: nodeConfiguration(index))
    }

    /// `CLUSTER MYID` of node `index`.
    func nodeID(_ index: Int) async throws -> String {
        let c = try connection(index)
        defer { Task { await c.close() } }
        return try await c.send(["CLUSTER", "MYID"]).string ?? ""
    }
}
