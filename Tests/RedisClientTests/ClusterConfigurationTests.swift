import LocalRedis
import RedisClient
import TestSupport
import Testing

/// Cluster options in REDIS_URL (the go-redis convention for further seeds).
@Suite struct ClusterConfigurationTests {
    @Test func seedsAndModeFromURL() throws {
        let config = try RedisConfiguration(
            url: "rediss://app:p%40ss@cfg.example.com:6380?addr=10.0.0.2:6381&addr=[::1]:6382&cluster=yes&cluster_retry_window=3.5")
        #expect(config.endpoint == .tcp(host: "cfg.example.com", port: 6380))
        #expect(config.seeds == [.tcp(host: "10.0.0.2", port: 6381), .tcp(host: "::1", port: 6382)])
        #expect(config.clusterMode == .enabled)
        #expect(config.clusterRetryWindow == .milliseconds(3500))
        #expect(config.authentication == .init(username: "app", password: "p@ss"))
        let cluster = try RedisClusterConfiguration(config)
        #expect(cluster.seeds.map(\.description) == ["cfg.example.com:6380", "10.0.0.2:6381", "[::1]:6382"])
        #expect(cluster.retryWindow == .milliseconds(3500))

        #expect(try RedisConfiguration(url: "redis://h?cluster=no").clusterMode == .disabled)
        #expect(try RedisConfiguration(url: "redis://h").clusterMode == .auto)
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis://h?cluster=maybe") }
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis://h?addr=h2:99999") }
        #expect(throws: RedisError.self) { try RedisClusterConfiguration(RedisConfiguration(url: "redis://h/2?cluster=yes")) }
    }

    /// Seeds (`?addr=`) are for finding a cluster. With `cluster=no` they were dropped without a
    /// word; with `auto` a standalone server that answered (the URL's host, or a seed while the
    /// host was down) made a pool for the URL's host alone, the seeds ignored (a trial took them
    /// for a fallback server). Each is now refused, naming the server that answered.
    @Test func seedsOfAServerThatIsNotAClusterAreRefused() async throws {
        let refused = #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis://h?addr=h2:6380&cluster=no") }
        #expect(refused?.code == .invalidConfiguration)
        #expect(refused?.message.contains("cluster=no") == true)
        try await withRedisServer { server in
            let down = try LocalRedisServer.freePort()
            for url in ["redis://127.0.0.1:\(down)?addr=127.0.0.1:\(server.port)", "redis://127.0.0.1:\(server.port)?addr=127.0.0.1:\(down)"] {
                let config = try RedisConfiguration(url: url)
                let error = await #expect(throws: RedisError.self) { try await isClusterEnabled(config) }
                #expect(error?.code == .invalidConfiguration, "\(url)")
                #expect(error?.message.contains("127.0.0.1:\(server.port) answers as a standalone server") == true, "\(String(describing: error))")
            }
            // Without seeds a standalone server is simply not a cluster.
            #expect(try await isClusterEnabled(RedisConfiguration(url: "redis://127.0.0.1:\(server.port)")) == false)
        }
    }

    /// A standalone server and a cluster's node as seeds of one URL: the services' cluster
    /// client found the cluster through the node and served, while the workers given the same
    /// URL refused it (a review). Both refuse it now, naming the standalone server.
    @Test func aStandaloneServerAmongClusterSeedsIsRefusedByTheClusterClientToo() async throws {
        var options = LocalRedisCluster.Options()
        options.replicasPerPrimary = 0
        try await withRedisServer { server in
            try await withLocalCluster(options) { cluster, _ in
                let config = try RedisConfiguration(url: "redis://127.0.0.1:\(server.port)?addr=\(cluster.addresses[0])")
                let detected = await #expect(throws: RedisError.self) { try await isClusterEnabled(config) }
                #expect(detected?.code == .invalidConfiguration, "\(String(describing: detected))")
                let client = try RedisClusterClient(configuration: try RedisClusterConfiguration(config))
                let refused = await #expect(throws: RedisError.self) { try await client.connect() }
                #expect(refused?.code == .invalidConfiguration, "\(String(describing: refused))")
                #expect(refused?.message.contains("127.0.0.1:\(server.port) answers as a standalone server") == true, "\(String(describing: refused))")
                await client.shutdown()
            }
        }
    }

    @Test func hashTags() throws {
        #expect(HashSlot(key: "{a}x") == HashSlot(key: "a"))
        #expect(HashSlot(key: "{}a") != HashSlot(key: "a"))  // empty tag: the whole key
        #expect(HashSlot(key: "x{a}{b}") == HashSlot(key: "a"))  // the first tag only
        #expect(HashSlot(key: "{{a}}") == HashSlot(key: "{a"))  // up to the first closing brace
        #expect(throws: RedisError.self) { try HashSlot.common(["a", "b"]) }
        #expect(try HashSlot.common(["{o}a", "{o}b"]) == HashSlot(key: "o"))
        #expect(try HashSlot.common([]) == nil)
    }
}
