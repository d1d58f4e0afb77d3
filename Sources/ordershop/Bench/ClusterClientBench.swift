import LocalRedis
import RedisClient

/// `ordershop bench client --cluster`: pipelined XADD over the slots of a local 3-primary
/// Redis Cluster, our ``RedisClusterClient`` beside `redis-benchmark --cluster`, same depth.
///
/// redis-benchmark in cluster mode gives each client one primary and replaces `{tag}` with a
/// tag of that primary's slots; with one client per primary (`-c 3`) and `-P depth`, each
/// primary sees pipelines `depth` deep from its own client. The headline figure has the same
/// shape: one caller per primary, each sending pipelines of `depth` XADDs to its stream through
/// the cluster client's routing. `.pinned` is the same with each caller's loop on its node's
/// connection thread (`RedisClusterClient.withPinnedExecution(forKeys:)`: no thread switch per
/// pipeline, as redis-benchmark's one event loop has none). `.split` is one caller whose pipelines span the primaries
/// (`execute` splits each 3 × depth batch per node and sends the parts at once): the same depth
/// per node, but every round waits for the slowest node. `.client_cpu` and `.redis_cpu` say
/// what bounds the caller figures: CPU per XADD of the client process (for the peer, of
/// redis-benchmark) and of the three servers together.
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
        _ = try await pipelinedClusterXADDPerCaller(client, keys: keys, count: min(requests, 20 * depth * primaries))
        _ = try await pipelinedClusterXADDPerCaller(client, keys: keys, count: min(requests, 20 * depth * primaries), pinned: true)
        if let peer { _ = try await redisBenchmark(peer, port: cluster.nodes[0].port, clients: primaries, arguments: peerArguments) }
        var results = BenchResults()
        let name = "client.cluster.xadd.pipelined\(depth)"
        for _ in 0..<runs {
            // What bounds each side: CPU per operation of the client and of the Redis servers.
            let split = try await accounted(client) { try await pipelinedClusterXADD(client, keys: keys, count: requests) }
            let callers = try await accounted(client) { try await pipelinedClusterXADDPerCaller(client, keys: keys, count: requests) }
            let pinned = try await accounted(client) { try await pipelinedClusterXADDPerCaller(client, keys: keys, count: requests, pinned: true) }
            var theirs: Accounted?
            if let peer {
                theirs = try await accounted(client, peer: true) {
                    try await redisBenchmark(peer, port: cluster.nodes[0].port, clients: primaries, arguments: peerArguments)
                }
            }
            results.add(BenchFigure(name: name, unit: "ops/s", ours: callers.rate, peer: theirs?.rate))
            results.add(BenchFigure(name: name + ".pinned", unit: "ops/s", ours: pinned.rate, peer: theirs?.rate))
            results.add(BenchFigure(name: name + ".split", unit: "ops/s", ours: split.rate, peer: theirs?.rate))
            results.add(BenchFigure(name: name + ".client_cpu", unit: "µs/op", ours: callers.clientMicros, peer: theirs?.clientMicros))
            results.add(BenchFigure(name: name + ".pinned.client_cpu", unit: "µs/op", ours: pinned.clientMicros, peer: theirs?.clientMicros))
            results.add(BenchFigure(name: name + ".redis_cpu", unit: "µs/op", ours: callers.redisMicros, peer: theirs?.redisMicros))
            results.add(BenchFigure(name: name + ".busiest_node_share", unit: "%", ours: callers.busiestShare, peer: theirs?.busiestShare))
        }
        let stats = client.statistics
        await client.shutdown()
        if peer == nil { results.note("redis-benchmark not found on PATH: peer figures are missing") }
        if stats.moved + stats.ask > 0 { results.note("redirects during the run: \(stats.moved) MOVED, \(stats.ask) ASK") }
        results.print(
            json: json,
            title: "client --cluster: \(primaries) primaries on 127.0.0.1 (no replicas); XADD pipelined \(depth) deep per primary, one caller per primary (\(requests) requests); peer: redis-benchmark --cluster -c \(primaries)")
    }

    /// A rate and the CPU it took: of this process (or, for the peer, of the child that ran and
    /// exited meanwhile) and of the Redis servers, per operation, and the busiest node's share of it.
    private struct Accounted {
        var rate: Double
        var clientMicros: Double
        var redisMicros: Double
        var busiestShare: Double
    }

    private func accounted(_ client: RedisClusterClient, peer: Bool = false, _ body: () async throws -> Double) async throws -> Accounted {
        let ownBefore = peer ? CPUAccounting.exitedChildrenSeconds : CPUAccounting.ownSeconds
        let serversBefore = try await CPUAccounting.serverSeconds(client)
        let rate = try await body()
        let ownAfter = peer ? CPUAccounting.exitedChildrenSeconds : CPUAccounting.ownSeconds
        let serversAfter = try await CPUAccounting.serverSeconds(client)
        let perNode = serversAfter.map { address, after in after - (serversBefore[address] ?? after) }
        let redis = perNode.reduce(0, +)
        return Accounted(
            rate: rate, clientMicros: (ownAfter - ownBefore) / Double(requests) * 1e6, redisMicros: redis / Double(requests) * 1e6,
            busiestShare: redis > 0 ? 100 * (perNode.max() ?? 0) / redis : 0)
    }

    /// `count` XADDs from one caller per primary (redis-benchmark's shape: `-c 3`, one client per
    /// node), each caller sending pipelines of ``depth`` XADDs to its stream through the cluster
    /// client's routing, each pipeline awaited before its next; ops/s.
    private func pipelinedClusterXADDPerCaller(
        _ client: RedisClusterClient, keys: [RedisArgument], count: Int, pinned: Bool = false
    ) async throws -> Double {
        let field = [StreamField("f", "v")]
        let share = count / keys.count
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for key in keys {
                let full = [XADD](repeating: XADD(key, fields: field), count: depth)
                group.addTask {
                    @Sendable func publish() async throws {
                        var remaining = share
                        while remaining > 0 {
                            let batch = remaining >= full.count ? full : Array(full.prefix(remaining))
                            for result in await client.pipeline(batch) { _ = try result.get() }
                            remaining -= batch.count
                        }
                    }
                    if pinned {
                        try await client.withPinnedExecution(forKeys: [key], publish)
                    } else {
                        try await publish()
                    }
                }
            }
            try await group.waitForAll()
        }
        return Double(share * keys.count) / seconds(ContinuousClock.now - started)
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
