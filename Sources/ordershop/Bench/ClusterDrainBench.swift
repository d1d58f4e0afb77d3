import Foundation
import LocalRedis
import RedisClient
import StreamWorker

/// `bench worker --cluster`: worker processes draining a stream of P partitions spread over a
/// local 3-primary Redis Cluster, timed as ``WorkerDrainBench`` times one stream (preloaded
/// events, readers blocked first, the clock from the release to the poll that sees every
/// partition read and settled), plus what bounds it: each primary's Redis CPU (`INFO cpu`
/// before and after) and its share of the events.
struct ClusterDrainBench {
    struct Options {
        var events: Int
        var processes: Int
        var partitions: Int
        var settle: String
        var maxInFlight: Int
        var prefetch: Int
        var readCount: Int
        /// The probes' `--settle-linger-ms` (nil: the runtime's default).
        var settleLingerMs: Int?
    }

    struct Result {
        var events: Int
        var seconds: Double
        /// Redis CPU seconds of each primary during the drain, and the events its partitions held.
        var nodes: [(address: String, cpuSeconds: Double, events: Int)]
        /// What the primaries spent on each command during the drain, summed.
        var commands: CommandStats
        var eventsPerSecond: Double { Double(events) / seconds }
        var redisMicrosPerEvent: Double { nodes.map(\.cpuSeconds).reduce(0, +) / Double(events) * 1e6 }
        /// The largest share of the events one primary's partitions held, in percent.
        var busiestShare: Double { 100 * Double(nodes.map(\.events).max() ?? 0) / Double(events) }
    }

    let executable: String

    func run(_ o: Options) async throws -> Result {
        var clusterOptions = LocalRedisCluster.Options()
        clusterOptions.replicasPerPrimary = 0
        let cluster = try await LocalRedisCluster(clusterOptions)
        var configuration = cluster.configuration
        configuration.node.timeouts.command = .seconds(120)
        let client = try RedisClusterClient(configuration: configuration)
        do {
            let result = try await measure(o, cluster: cluster, client: client)
            await client.shutdown()
            await cluster.shutdown()
            return result
        } catch {
            await client.shutdown()
            await cluster.shutdown()
            throw error
        }
    }

    private func measure(_ o: Options, cluster: LocalRedisCluster, client: RedisClusterClient) async throws -> Result {
        try await client.connect()
        let events = PartitionedStream("bench:drain", partitions: o.partitions)
        let group = "bench"
        // The peers' events, keyed by their customer (an entity of the shop): ~9,973 keys.
        var i = 0
        while i < o.events {
            let n = min(1000, o.events - i)
            let batch = (i..<(i + n)).map { k in
                events.add(key: String(format: "cust-%05d", k % 9973), fields: BenchEvents.fields(k))
            }
            for result in await client.pipeline(batch) { _ = try result.get() }
            i += n
        }
        for stream in events.streams {
            _ = try await client.send(XGROUPCREATE(RedisArgument(stream), group: group, id: "$", makeStream: true))
        }

        var probes: [ChildProcess] = []
        defer { WorkerDrainBench.discard(probes) }
        for _ in 0..<o.processes {
            probes.append(
                try ChildProcess(
                    executable,
                    [
                        "worker-probe", "--url", cluster.url, "--stream", events.name, "--partitions", "\(o.partitions)", "--group", group,
                        "--settle", o.settle, "--max-in-flight", "\(o.maxInFlight)", "--prefetch", "\(o.prefetch)", "--read-count", "\(o.readCount)",
                    ] + (o.settleLingerMs.map { ["--settle-linger-ms", "\($0)"] } ?? [])))
        }
        // Every reader of every probe: per partition the subscription's readers and one on its replay stream.
        let readers = o.processes * o.partitions * (WorkerConfiguration().readers + 1)
        let deadline = ContinuousClock.now + .seconds(120)
        while try await blockedReaders(client) < readers {
            if let dead = probes.first(where: { !$0.isRunning }) { throw BenchRunError("worker-probe exited at start: \(dead.output.suffix(800))") }
            if ContinuousClock.now > deadline { throw BenchRunError("timed out waiting for \(readers) blocked readers") }
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(100))

        let commandsBefore = try await CommandStats.snapshot(client)
        let cpuBefore = try await CPUAccounting.serverSeconds(client)
        let started = ContinuousClock.now
        var lastIDs: [String] = []
        for (p, stream) in events.streams.enumerated() {
            _ = try await client.send(XGROUPSETID(RedisArgument(stream), group: group, id: "0", entriesRead: 0))
            // One more event per partition wakes its blocked readers at once.
            let id = try await client.send(XADD(RedisArgument(stream), fields: BenchEvents.fields(o.events + p)))
            lastIDs.append(id ?? "")
        }
        let total = o.events + o.partitions
        var finished = started
        while true {
            var done = true
            // Entries not yet read or not yet acked, over every partition (nil: a lag unknown).
            var remaining: Int? = 0
            for (p, info) in await client.pipeline(events.streams.map { XINFOGROUPS(RedisArgument($0)) }).enumerated() {
                let g = try info.get().first(where: { $0.name == group })
                if let g, let lag = g.lag { remaining? += lag + g.pending } else { remaining = nil }
                if g == nil || g?.pending != 0 || g?.lastDeliveredID != lastIDs[p] { done = false }
            }
            if done {
                finished = .now
                break
            }
            if let dead = probes.first(where: { !$0.isRunning }) { throw BenchRunError("worker-probe died while draining: \(dead.output.suffix(800))") }
            let elapsed = ContinuousClock.now - started
            if elapsed > .seconds(900) { throw BenchRunError("drain did not finish within 15 minutes") }
            try await Task.sleep(for: remaining.map { DrainPolling.pause(remaining: $0, done: total - $0, elapsed: elapsed) } ?? DrainPolling.shortest)
        }
        let seconds = (finished - started).benchSeconds
        let cpuAfter = try await CPUAccounting.serverSeconds(client)
        let commandsAfter = try await CommandStats.snapshot(client)
        let commands = CommandStats.sum(commandsAfter.map { address, after in after.since(commandsBefore[address] ?? CommandStats()) })

        var perNode: [ClusterNodeAddress: Int] = [:]
        for stream in events.streams {
            let owner = client.primary(for: HashSlot(key: stream))!
            perNode[owner, default: 0] += try await client.send(XLEN(RedisArgument(stream)))
        }
        var handled = 0
        for p in probes {
            let status = await p.stop(signal: SIGTERM, grace: .seconds(30))
            guard status == 0 else { throw BenchRunError("worker-probe did not exit cleanly: \(p.output.suffix(800))") }
            handled += try WorkerDrainBench.stats(of: p)["processed"] ?? 0
        }
        guard handled == total else { throw BenchRunError("the probes processed \(handled) events, expected \(total)") }
        let nodes = cpuAfter.keys.sorted { "\($0)" < "\($1)" }.map { address in
            ("\(address)", cpuAfter[address]! - (cpuBefore[address] ?? 0), perNode[address] ?? 0)
        }
        return Result(events: total, seconds: seconds, nodes: nodes, commands: commands)
    }

    /// Clients parked in a blocking XREADGROUP on every primary.
    private func blockedReaders(_ client: RedisClusterClient) async throws -> Int {
        var count = 0
        for (_, result) in try await client.sendToAllPrimaries(RawCommand(["CLIENT", "LIST", "TYPE", "normal"])) {
            count += BenchEnvironment.blockedReaders(inClientList: try result.get().string ?? "")
        }
        return count
    }
}
