import Foundation

/// `bench worker --cluster`: the idempotent drain of a stream of `--partitions` partitions on a
/// local 3-primary cluster, beside the same workers on one node and the redis-py peer on one
/// node, in each run; and what bounds each: Redis CPU per event (all nodes together) and the
/// busiest node's share of the events.
extension BenchWorkerCommand {
    func runCluster() async throws {
        let peers = try await options.peerRunner()
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var results = BenchResults()
        var projections: [String] = []
        // Read-ahead for every partition as for one stream, on both sides: with 1,000 for all six
        // partitions each partition's settles carried ~215 entries against ~475 on one node, and
        // the cluster's Redis CPU per event was 1.15x one node's in that run; with 6,000 both
        // carried ~460-480 (one node's do not grow: they reach the settle target) and 1.06-1.08x.
        let prefetch = prefetch ?? 1000 * partitions
        for run in 1...options.runs {
            for k in processes {
                benchLog("run \(run): ours on a 3-primary cluster, \(partitions) partitions, \(k) process(es)")
                let onCluster = try await ClusterDrainBench(executable: executable).run(
                    .init(
                        events: events, processes: k, partitions: partitions, settle: "idempotent", maxInFlight: maxInFlight, prefetch: prefetch,
                        readCount: readCount, settleLingerMs: settleLingerMs))
                let (onOneNode, peer) = try await BenchEnvironment.with(peers: peers) { env in
                    benchLog("run \(run): ours on one node, \(k) process(es)")
                    let ours = try await WorkerDrainBench(env: env).run(
                        .init(
                            events: events, processes: k, settle: "idempotent", maxInFlight: maxInFlight, prefetch: prefetch, readCount: readCount,
                            settleLingerMs: settleLingerMs))
                    return (ours, try await peerDrain(env, run: run, consumers: k))
                }
                let suffix = k == 1 ? "" : ".\(k)proc"
                results.add(BenchFigure(name: "worker.drain.idempotent.cluster\(suffix)", unit: "events/s", ours: onCluster.eventsPerSecond, peer: peer))
                results.add(BenchFigure(name: "worker.drain.idempotent\(suffix)", unit: "events/s", ours: onOneNode.eventsPerSecond, peer: peer))
                // Cluster against one node (in the peer column): the cost of spreading the stream.
                results.add(
                    BenchFigure(
                        name: "redis_cpu.cluster_vs_one_node\(suffix)", unit: "µs/op", ours: onCluster.redisMicrosPerEvent,
                        peer: onOneNode.redisMicrosPerEvent))
                results.add(BenchFigure(name: "busiest_node_share.cluster\(suffix)", unit: "%", ours: onCluster.busiestShare, peer: nil))
                // Where the difference comes from: each command's calls per event and cost per call, cluster against one node.
                results.add(
                    CommandBreakdown(cluster: onCluster.commands, clusterEvents: onCluster.events, oneNode: onOneNode.commands, oneNodeEvents: onOneNode.events)
                        .figures(suffix: suffix))
                let shares = onCluster.nodes.map { node in
                    "\(node.address) \(String(format: "%.1f", 100 * Double(node.events) / Double(onCluster.events)))% of events, "
                        + "\(String(format: "%.2f", node.cpuSeconds)) s CPU"
                }
                // One node's thread caps the drain at 1 / (its Redis CPU per event); spread over the
                // shards, the busiest one caps it (a projection, not a measurement).
                let cap = 1e6 / onOneNode.redisMicrosPerEvent
                let projected = 1e6 / (onCluster.redisMicrosPerEvent * onCluster.busiestShare / 100)
                projections.append(
                    "run \(run), \(k) process(es): nodes: \(shares.joined(separator: "; ")); projection: one node's Redis thread caps the drain at "
                        + "\(Int(cap)) events/s, three shards at these shares at \(Int(projected)) events/s (\(String(format: "%.2f", projected / cap))x)")
            }
        }
        for line in projections { results.note(line) }
        results.note(CommandBreakdown.explanation)
        results.print(
            json: options.json,
            title: "worker drain on a cluster: \(events) events over \(partitions) partitions on 3 primaries (no replicas), idempotent settle, "
                + "beside one node; probes --max-in-flight \(maxInFlight) --prefetch \(prefetch) --read-count \(readCount)\(lingerLabel); peer: redis-py + hiredis on one node")
    }
}
