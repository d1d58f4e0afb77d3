import LocalRedis
import RedisClient

/// `ordershop bench client --cluster`: pipelined XADD over the slots of a local 3-primary
/// Redis Cluster, our ``RedisClusterClient`` beside `redis-benchmark --cluster`, same depth.
///
/// redis-benchmark in cluster mode gives each client one primary and replaces `{tag}` with a
/// tag of that primary's slots; with one client per primary and `-P depth`, each primary sees
/// pipelines `depth` deep. Ours sends one pipeline of `depth` XADDs per primary per round
/// (`execute` splits a 3 × depth batch per node and sends the three parts at once), to one
/// stream per primary: the same depth per node, the same three connections.
extension BenchClientCommand {
    func measureCluster() async throws {
        var options = LocalRedisCluster.Options()
        options.replicasPerPrimary = 0
        let cluster = try await LocalRedisCluster(options)
        do {
            try await measure(on: cluster)
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    private func measure(on cluster: LocalRedisCluster) async throws {
        var configuration = cluster.configuration
        configuration.node.timeouts.command = .seconds(60)
        configuration.connectionsPerNode = 1
        let client = try RedisClusterClient(configuration: configuration)
        try await client.connect()
        let primaries = client.shards.count
        // One stream per primary, named the way redis-benchmark's {tag} would pick it.
        var keys: [RedisArgument] = []
        var owners: Set<ClusterNodeAddress> = []
        var n = 0
        while owners.count < primaries {
            let key = "ordershop:bench:cluster:{\(n)}"
            n += 1
            if owners.insert(client.primary(for: HashSlot(key: key))!).inserted { keys.append(RedisArgument(key)) }
        }
        let peer = try? ChildProcess.resolve("redis-benchmark")
        let peerArguments = ["--cluster", "-P", "\(depth)", "-n", "\(requests)", "XADD", "ordershop:bench:cluster:{tag}", "*", "f", "v"]

        _ = try await pipelinedClusterXADD(client, keys: keys, count: min(requests, 20 * depth * primaries))
        if let peer { _ = try await redisBenchmark(peer, port: cluster.nodes[0].port, clients: primaries, arguments: peerArguments) }
        var results = BenchResults()
        for _ in 0..<runs {
            let ours = try await pipelinedClusterXADD(client, keys: keys, count: requests)
            var theirs: Double?
            if let peer {
                theirs = try await redisBenchmark(peer, port: cluster.nodes[0].port, clients: primaries, arguments: peerArguments)
            }
            results.add(BenchFigure(name: "client.cluster.xadd.pipelined\(depth)", unit: "ops/s", ours: ours, peer: theirs))
        }
        let stats = client.statistics
        await client.shutdown()
        if peer == nil { results.note("redis-benchmark not found on PATH: peer figures are missing") }
        if stats.moved + stats.ask > 0 { results.note("redirects during the run: \(stats.moved) MOVED, \(stats.ask) ASK") }
        results.print(
            json: json,
            title: "client --cluster: \(primaries) primaries on 127.0.0.1 (no replicas); XADD pipelined \(depth) deep per primary (\(requests) requests); peer: redis-benchmark --cluster -c \(primaries)")
    }

    /// `count` XADDs in rounds of `depth` per stream (one stream per primary), each round awaited; ops/s.
    private func pipelinedClusterXADD(_ client: RedisClusterClient, keys: [RedisArgument], count: Int) async throws -> Double {
        let field = [StreamField("f", "v")]
        let round = keys.flatMap { key in [XADD](repeating: XADD(key, fields: field), count: depth) }
        var remaining = count
        let started = ContinuousClock.now
        while remaining > 0 {
            let batch = remaining >= round.count ? round : Array(round.prefix(remaining))
            for result in await client.pipeline(batch) { _ = try result.get() }
            remaining -= batch.count
        }
        return Double(count) / seconds(ContinuousClock.now - started)
    }
}
