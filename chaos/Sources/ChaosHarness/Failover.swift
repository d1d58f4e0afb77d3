import Foundation
import LocalRedis

/// The replicated topology's faults: a primary dies, or is demoted, and the replica takes over
/// behind the endpoint that moves, as a managed service fails over.
extension Topology {
    /// SIGKILLs the primary; after `delay` seconds (a managed service's detection and election)
    /// promotes the replica and moves the endpoint and the workers' proxy to it; then starts the
    /// dead server again as the new primary's replica, so the next failover has one. What the
    /// dead primary had not yet replicated is lost: only unconfirmed writes may be among it.
    public func failover(after delay: Double) async throws -> String {
        guard let replication else { throw ChaosError("failover needs --topology replicated") }
        let old = replication.primaryIndex
        let new = replication.servers.indices.first { $0 != old }!
        await replication.servers[old].kill()
        await pause(seconds: delay)
        try await takeOver(new, from: old, in: replication)
        return "killed primary :\(replication.servers[old].port); :\(replication.servers[new].port) promoted after \(String(format: "%.1f", delay)) s; the old one back as its replica"
    }

    /// Promotes the replica while the primary lives (it is demoted to the new primary's replica)
    /// and moves the endpoint: connections made before still reach the demoted node and are
    /// answered READONLY until they reconnect.
    public func promotion() async throws -> String {
        guard let replication else { throw ChaosError("promotion needs --topology replicated") }
        let old = replication.primaryIndex
        let new = replication.servers.indices.first { $0 != old }!
        move(to: replication.servers[new].port)
        try await replication.promote(new, replicatingThrough: replicationLink?.port)
        try await replication.waitUntilReplicasAttached()
        return ":\(replication.servers[new].port) promoted, :\(replication.servers[old].port) demoted to its replica"
    }

    /// Cuts the replication link for `seconds` while the load runs (writes reach the primary
    /// only; with `--confirm-replicas` they answer 503 "may have been applied"), then SIGKILLs
    /// the primary and discards what the link still held, and promotes the replica without it.
    public func partition(for seconds: Double) async throws -> String {
        guard let replication, let link = replicationLink else { throw ChaosError("partition needs --topology replicated") }
        let old = replication.primaryIndex
        let new = replication.servers.indices.first { $0 != old }!
        link.stall(for: .seconds(3600))
        await pause(seconds: seconds)
        await replication.servers[old].kill()
        // RST both ways: the bytes the proxy holds never reach the replica.
        _ = await link.resetConnections()
        link.heal()
        try await takeOver(new, from: old, in: replication)
        return "replica :\(replication.servers[new].port) cut off for \(String(format: "%.1f", seconds)) s, then primary :\(replication.servers[old].port) killed and the replica promoted"
    }

    /// Server `new` becomes the primary after `old` died: the endpoint, the workers' proxy and
    /// the replication link move to it; `old` comes back as its replica.
    private func takeOver(_ new: Int, from old: Int, in replication: LocalRedisReplication) async throws {
        move(to: replication.servers[new].port)
        try await replication.promote(new, replicatingThrough: replicationLink?.port)
        try await replication.restart(old, replicatingThrough: replicationLink?.port)
        ChildRegistry.add(replication.servers[old].pid)
    }

    /// New connections of the services, the tools, the harness and the workers go to `port`.
    private nonisolated func move(to port: Int) {
        replicationLink?.retarget(toPort: port)
        endpoint?.retarget(toPort: port)
        proxy.retarget(toPort: port)
    }

    /// After the load: Redis running (single: restarted if a fault left it down; replicated:
    /// every server running and the replica in sync; cluster: every node running, the cluster
    /// ok and every replica attached).
    public func restoreRedis() async throws {
        if let cluster { return try await restoreCluster(cluster) }
        guard let replication else {
            try await redis.start()
            ChildRegistry.add(redis.pid)
            return
        }
        for index in replication.servers.indices where replication.servers[index].pid == nil {
            try await replication.restart(index, replicatingThrough: replicationLink?.port)
            ChildRegistry.add(replication.servers[index].pid)
        }
        try await replication.waitUntilReplicasAttached()
    }
}
