import ChaosHarness
import Foundation
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// The `node-partition` fault on a real cluster whose nodes are reached through
/// ``ClusterNetwork``'s proxies: what it must do for a chaos run to prove anything.
@Suite(.serialized) struct ClusterPartitionTests {
    /// The split brain: a primary cut off from the other nodes keeps taking a client's writes
    /// (the client reaches it through its proxy), but its `WAIT` finds no replica; the majority
    /// promotes the replica; once healed, the old primary is a replica and what it took in the
    /// minority is gone. Fails if the cut leaks replication (WAIT answers 1), leaks the bus (no
    /// takeover), or cuts the clients (the write fails).
    @Test func aPartitionedPrimaryLosesWhatItTookAndItsWAITSaysSo() async throws {
        let network = try ClusterNetwork(count: 6)
        defer { network.stop() }
        var options = LocalRedisCluster.Options()
        options.routes = network.routes
        options.nodeStarted = { network.forward($0, port: $1, busPort: $2) }
        try await withLocalCluster(options) { cluster, client in
            let key: RedisArgument = "{partition-test}k"
            let slot = HashSlot(key: "{partition-test}k")
            // The client's way in, through the proxy the cluster announces for the node.
            // Confirmed on the connection that wrote it: a WAIT on another connection (which
            // has written nothing) answers at once and confirms nothing. With the WAIT on the
            // proxy connection only, 1 run in 3 lost "before": the cut came before it replicated.
            let confirmed = try await client.withConnection(forKeys: [key]) { connection in
                let (set, wait) = try await connection.pipeline(SET(key, "before"), WAIT(replicas: 1, timeout: .seconds(5)))
                return try set.get() && (try wait.get()) == 1
            }
            #expect(confirmed)
            let victim = try #require(try await cluster.primaryIndex(for: slot))
            let replica = try #require(try await cluster.roles().replicasOf[victim]?.first)
            let throughProxy = try RedisConnection(configuration: RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: cluster.announcedPort(of: victim))))
            #expect(try await throughProxy.send(WAIT(replicas: 1, timeout: .seconds(2))) == 1)

            network.isolate(victim)
            // Within the node timeout (2 s) the old primary still takes writes: nothing confirms them.
            #expect(try await throughProxy.send(SET(key, "minority")))
            #expect(try await throughProxy.send(WAIT(replicas: 1, timeout: .milliseconds(500))) == 0)
            await throughProxy.close()

            var promoted: Int?
            let deadline = ContinuousClock.now + .seconds(30)
            while promoted == nil, ContinuousClock.now < deadline {
                if let now = try? await cluster.primaryIndex(for: slot, avoiding: [victim]), now != victim { promoted = now }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(promoted == replica, "the majority promotes the cut-off primary's replica")
            #expect(network.replicaLinksCutOff(at: victim) > 0, "the replica's link is held")

            network.heal()
            try await cluster.waitUntilHealthy(timeout: .seconds(60))
            let roles = try await cluster.roles()
            #expect(!roles.primaries.contains(victim))
            #expect(roles.replicasOf[replica]?.contains(victim) == true)
            // The write the minority took is lost; the one confirmed before is kept.
            let value = try await client.send(GET(key))
            #expect(value.map { String(decoding: $0, as: UTF8.self) } == "before")
        }
    }
}
