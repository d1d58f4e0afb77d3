import RedisClient
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
