/// The per-command figures of `bench worker --cluster`: for each Redis command, events per call
/// (the batch it carried), microseconds per call and per event, on the cluster (all primaries summed, in the ours column) and on
/// one node (in the peer column), so that a reader sees why the Redis CPU per event differs:
/// more calls per event (smaller batches per partition) or dearer calls.
struct CommandBreakdown {
    let cluster: CommandStats
    let clusterEvents: Int
    let oneNode: CommandStats
    let oneNodeEvents: Int

    /// Commands below this many calls per event on both sides (set-up, the bench's own INFO
    /// and CLIENT LIST, a stray XAUTOCLAIM pass) are left out: they say nothing about the drain.
    static let minimumCallsPerEvent = 0.0005

    static let explanation =
        "redis.<command>.events_per_call, .us_per_call and .us_per_event: INFO commandstats deltas over the drain, cluster (primaries summed, "
        + "ours column) against one node (peer column); events_per_call is the mean batch a call carried. Commands the settle script runs (xpending, hmget, hset, pexpireat, unlink, xack) "
        + "count under their own names and inside evalsha's time; hmget also counts the pre-check's two per read batch. "
        + "us_per_call is Redis's wall-clock time per call: on a loaded machine it includes time the server was descheduled, "
        + "so compare events per call first, and take redis_cpu (INFO cpu) as the CPU figure."

    func figures(suffix: String) -> [BenchFigure] {
        let names = Set(cluster.commands.keys).union(oneNode.commands.keys)
        // The dearest commands on the cluster first.
        let kept = names.filter {
            max(callsPerEvent(cluster, clusterEvents, $0), callsPerEvent(oneNode, oneNodeEvents, $0)) >= Self.minimumCallsPerEvent
        }.sorted { (cluster.commands[$0]?.usec ?? 0, $1) > (cluster.commands[$1]?.usec ?? 0, $0) }
        return kept.flatMap { name in
            [
                BenchFigure(
                    name: "redis.\(name).events_per_call\(suffix)", unit: "ev/call", ours: eventsPerCall(cluster, clusterEvents, name) ?? 0,
                    peer: eventsPerCall(oneNode, oneNodeEvents, name)),
                BenchFigure(
                    name: "redis.\(name).us_per_call\(suffix)", unit: "µs/op", ours: usecPerCall(cluster, name) ?? 0, peer: usecPerCall(oneNode, name)),
                BenchFigure(
                    name: "redis.\(name).us_per_event\(suffix)", unit: "µs/op", ours: usecPerEvent(cluster, clusterEvents, name),
                    peer: usecPerEvent(oneNode, oneNodeEvents, name)),
            ]
        }
    }

    private func callsPerEvent(_ stats: CommandStats, _ events: Int, _ name: String) -> Double {
        Double(stats.commands[name]?.calls ?? 0) / Double(events)
    }

    /// Events per call: the mean batch of a command that carries entries (XREADGROUP, EVALSHA).
    private func eventsPerCall(_ stats: CommandStats, _ events: Int, _ name: String) -> Double? {
        guard let c = stats.commands[name], c.calls > 0 else { return nil }
        return Double(events) / Double(c.calls)
    }

    private func usecPerCall(_ stats: CommandStats, _ name: String) -> Double? {
        guard let c = stats.commands[name], c.calls > 0 else { return nil }
        return Double(c.usec) / Double(c.calls)
    }

    private func usecPerEvent(_ stats: CommandStats, _ events: Int, _ name: String) -> Double {
        Double(stats.commands[name]?.usec ?? 0) / Double(events)
    }
}
