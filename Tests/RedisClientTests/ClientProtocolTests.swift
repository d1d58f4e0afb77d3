import LocalRedis
import RedisClient
import TestSupport
import Testing

/// One piece of code, written against `RedisClientProtocol`, runs on the single-server pool
/// and on the cluster client alike.
@Suite(.serialized) struct ClientProtocolTests {
    /// Typed commands, a typed pipeline and transaction, a script and a dedicated connection,
    /// all on keys of one hash tag (so that they are legal on a cluster too).
    static func exercise(_ client: some RedisClientProtocol) async throws {
        let stream: RedisArgument = "orders:{42}"
        let counter: RedisArgument = "orders:{42}:count"
        let id = try await client.send(XADD(stream, fields: [StreamField("event", "created")]))
        #expect(id != nil)
        let (length, count) = await client.pipeline(XLEN(stream), INCRBY(counter, by: 5))
        #expect(try length.get() == 1)
        #expect(try count.get() == 5)
        let (added, incremented) = try await client.transaction(XADD(stream, fields: [StreamField("event", "paid")]), INCRBY(counter, by: 1))
        #expect(try added.get() != nil)
        #expect(try incremented.get() == 6)
        let script = RedisScript("return redis.call('XLEN', KEYS[1]) + tonumber(redis.call('GET', KEYS[2]))")
        #expect(try await client.evaluate(script, keys: [stream, counter], arguments: []).int == 8)
        let lengths = await client.pipeline([XLEN(stream), XLEN("orders:{42}:none")])
        #expect(lengths.map { try? $0.get() } == [2, 0])
        let pending = try await client.withConnection(forKeys: [stream]) { connection in
            try await connection.send(XGROUPCREATE(stream, group: "billing", id: "0"))
            return try await connection.send(
                XREADGROUP(group: "billing", consumer: "b1", streams: [(key: "orders:{42}", id: ">")], count: 10, block: .milliseconds(100)))
        }
        #expect(pending.first?.entries.count == 2)
    }

    @Test func singleServerPool() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await Self.exercise(pool)
            await pool.shutdown()
        }
    }

    @Test func clusterClient() async throws {
        try await withLocalCluster(ClusterSlotTests.noReplicas) { _, client in
            try await Self.exercise(client)
        }
    }

    @Test func connectRedisPicksTheClient() async throws {
        try await withRedisServer { server in
            let client = try await connectRedis(server.configuration)
            #expect(client is RedisConnectionPool)
            await client.shutdown()
        }
        try await withLocalCluster(ClusterSlotTests.noReplicas) { cluster, _ in
            let client = try await connectRedis(RedisConfiguration(url: "redis://" + cluster.addresses[1]))
            #expect(client is RedisClusterClient)
            try await Self.exercise(client)
            await client.shutdown()
        }
    }
}
