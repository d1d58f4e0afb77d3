import Foundation
import LocalRedis
import OrderShop
import RedisClient

/// The cluster topology's faults: a primary dies and the cluster promotes its replica, a replica
/// takes over by `CLUSTER FAILOVER`, a slot moves to another primary under load. Each picks its
/// node by a key the shop uses (``targets``), so that the fault hits a slot the load writes.
extension Topology {
    /// Keys whose slots the shop's load writes: entity streams and records (`{customer}`...),
    /// orders and their decisions, stock and reservations, billing, and msg's mail stream with
    /// its idempotency markers (`mail:sent`, `{mail:sent}:key:...`).
    /// In a shop in partitions (``ShopLayout``) every type's partition p shares one slot: each
    /// partition's slot once (the orders' read model of the partition names it).
    public static func clusterTargets(in layout: ShopLayout) -> [String] {
        let entities = layout.partitions == 1 ? EntityType.allCases.map(\.tag) : layout.partitions(.order).map(\.keys.entities)
        return entities + ["{\(MailKeys.sent)}"]
    }

    /// ``clusterTargets(in:)`` by the shard of a new 3-primary cluster that serves them (redis-cli
    /// gives each a third of the slots, in order): four of the six hash into the last third, so
    /// the schedule takes the shards in turn, then a target in it (a uniform draw over the
    /// targets never hit the first shard in the CI run's schedule).
    public static func clusterTargetsByShard(in layout: ShopLayout) -> [[String]] {
        let groups = Dictionary(grouping: clusterTargets(in: layout)) { min(2, Int(HashSlot(key: $0).rawValue) / 5461) }
        return groups.keys.sorted().map { groups[$0]! }
    }

    private func requireCluster(_ fault: String) throws -> LocalRedisCluster {
        guard let cluster else { throw ChaosError("\(fault) needs --topology cluster") }
        return cluster
    }

    /// SIGKILLs the primary that serves `key`'s slot; waits until the cluster has promoted its
    /// replica (`cluster-node-timeout` 2 s, then the election); after `restartAfter` seconds
    /// starts the dead node again, which rejoins as the new primary's replica, and waits until
    /// every replica is attached (so that the next fault finds a replica to promote). What the
    /// dead primary had not yet replicated is lost: only unconfirmed writes may be among it.
    public func killPrimary(of key: String, restartAfter: Double) async throws -> String {
        let cluster = try requireCluster("primary-kill")
        let slot = HashSlot(key: key)
        guard let victim = try await cluster.primaryIndex(for: slot) else { throw ChaosError("no primary serves \(key)'s slot \(slot.rawValue)") }
        let killedAt = ContinuousClock.now
        await cluster.nodes[victim].kill()
        let promoted = await takeOver(of: slot, from: victim, in: cluster, since: killedAt)
        let tookOver = ContinuousClock.now - killedAt
        // The dead node comes back on every path (a shard left without it has no replica, and
        // without a takeover the cluster answers CLUSTERDOWN until it is back).
        if promoted != nil { await pause(seconds: restartAfter) }
        try await cluster.restart(victim)
        ChildRegistry.add(cluster.nodes[victim].pid)
        guard let promoted else { throw ChaosError("no replica took over slot \(slot.rawValue) within 60 s of killing :\(cluster.nodes[victim].port)") }
        try await cluster.waitUntilHealthy(timeout: .seconds(60))
        return "killed primary :\(cluster.nodes[victim].port) of \(key) (slot \(slot.rawValue)); :\(cluster.nodes[promoted].port) took over after \(Self.seconds(tookOver)); the dead one back as a replica"
    }

    /// SIGSTOPs the primary that serves `key`'s slot until the cluster has promoted its replica,
    /// then `seconds` more, then SIGCONT: the old primary wakes up still believing it is one,
    /// runs what clients had sent it meanwhile, then takes the cluster's word and resyncs as
    /// the new primary's replica (discarding those writes).
    public func pausePrimary(of key: String, beyondFailover seconds: Double) async throws -> String {
        let cluster = try requireCluster("primary-pause")
        let slot = HashSlot(key: key)
        guard let victim = try await cluster.primaryIndex(for: slot) else { throw ChaosError("no primary serves \(key)'s slot \(slot.rawValue)") }
        let pausedAt = ContinuousClock.now
        cluster.nodes[victim].signal(SIGSTOP)
        let promoted = await takeOver(of: slot, from: victim, in: cluster, since: pausedAt)
        let tookOver = ContinuousClock.now - pausedAt
        if promoted != nil { await pause(seconds: seconds) }
        cluster.nodes[victim].signal(SIGCONT)
        guard let promoted else { throw ChaosError("no replica took over slot \(slot.rawValue) within 60 s of stopping :\(cluster.nodes[victim].port)") }
        try await cluster.waitUntilHealthy(timeout: .seconds(60))
        return "SIGSTOP primary :\(cluster.nodes[victim].port) of \(key) (slot \(slot.rawValue)); :\(cluster.nodes[promoted].port) took over after \(Self.seconds(tookOver)); SIGCONT \(String(format: "%.1f", seconds)) s later, back as a replica"
    }

    /// Cuts the primary that serves `key`'s slot off from every other node (``ClusterNetwork/isolate(_:)``)
    /// while the clients still reach it, until the majority has promoted its replica, then
    /// `seconds` more, then heals the network. Meanwhile the old primary took writes until it saw
    /// itself in the minority (the node timeout) and answered CLUSTERDOWN after; healed, it
    /// learns it was replaced and resyncs as the new primary's replica, discarding those writes.
    public func partitionPrimary(of key: String, beyondFailover seconds: Double) async throws -> String {
        let cluster = try requireCluster("node-partition")
        guard let network = clusterNetwork else { throw ChaosError("node-partition needs the cluster's proxies") }
        let slot = HashSlot(key: key)
        guard let victim = try await cluster.primaryIndex(for: slot) else { throw ChaosError("no primary serves \(key)'s slot \(slot.rawValue)") }
        let offsetBefore = Int(try await cluster.replicationInfo(of: victim)["master_repl_offset"] ?? "") ?? 0
        let cutAt = ContinuousClock.now
        network.isolate(victim)
        defer { network.heal() }
        let promoted = await takeOver(of: slot, from: victim, in: cluster, since: cutAt)
        let tookOver = ContinuousClock.now - cutAt
        if promoted != nil { await pause(seconds: seconds) }
        // The cut must have held the replica's link (else the replica kept replicating and the
        // fault could lose nothing), and what the old primary took in the minority is lost once
        // it resyncs.
        let held = network.connectionsCutOff
        let replicaLinks = network.replicaLinksCutOff(at: victim)
        let offsetAfter = (try? await cluster.replicationInfo(of: victim)["master_repl_offset"]).flatMap { Int($0) }
        network.heal()
        guard let promoted else { throw ChaosError("no replica took over slot \(slot.rawValue) within 60 s of cutting :\(cluster.nodes[victim].port) off") }
        guard replicaLinks > 0 else { throw ChaosError("the partition of :\(cluster.nodes[victim].port) held no replica link (\(held) connections held)") }
        try await cluster.waitUntilHealthy(timeout: .seconds(60))
        let minority = offsetAfter.map { "\($0 - offsetBefore) bytes written in the minority" } ?? "its offset unknown"
        return "cut primary :\(cluster.nodes[victim].port) of \(key) (slot \(slot.rawValue)) off from the other nodes (\(held) links held; \(minority)); :\(cluster.nodes[promoted].port) took over after \(Self.seconds(tookOver)); healed \(String(format: "%.1f", seconds)) s later, back as a replica"
    }

    /// Waits (up to 60 s from `since`) until another node than `victim` serves `slot`, asking
    /// the others (a frozen victim would hold each question for the command timeout); that
    /// node, or nil when none took over in time or the wait was cancelled.
    private func takeOver(of slot: HashSlot, from victim: Int, in cluster: LocalRedisCluster, since: ContinuousClock.Instant) async -> Int? {
        while ContinuousClock.now - since < .seconds(60) {
            if let now = try? await cluster.primaryIndex(for: slot, avoiding: [victim]), now != victim { return now }
            do { try await Task.sleep(for: .milliseconds(100)) } catch { return nil }
        }
        return nil
    }

    /// `CLUSTER FAILOVER` on a replica of the primary that serves `key`'s slot.
    public func failOverReplica(of key: String) async throws -> String {
        let cluster = try requireCluster("cluster-failover")
        let slot = HashSlot(key: key)
        let roles = try await cluster.roles()
        guard let primary = try await cluster.primaryIndex(for: slot), let replica = roles.replicasOf[primary]?.first(where: { cluster.nodes[$0].pid != nil }) else {
            throw ChaosError("the primary of \(key)'s slot has no running replica")
        }
        let started = ContinuousClock.now
        try await cluster.failOver(to: replica)
        try await cluster.waitUntilHealthy(timeout: .seconds(60))
        return "CLUSTER FAILOVER: :\(cluster.nodes[replica].port) took \(key) (slot \(slot.rawValue)) over from :\(cluster.nodes[primary].port) in \(Self.seconds(ContinuousClock.now - started))"
    }

    /// Moves `key`'s slot, with every key in it, to the next primary (by port order) under load.
    public func migrateSlot(of key: String) async throws -> String {
        let cluster = try requireCluster("slot-migration")
        let slot = HashSlot(key: key)
        let primaries = try await cluster.roles().primaries.sorted { cluster.nodes[$0].port < cluster.nodes[$1].port }
        guard let source = try await cluster.primaryIndex(for: slot), let at = primaries.firstIndex(of: source) else {
            throw ChaosError("no primary serves \(key)'s slot \(slot.rawValue)")
        }
        let target = primaries[(at + 1) % primaries.count]
        let started = ContinuousClock.now
        let keys = try await cluster.moveSlot(slot, from: source, to: target)
        return "slot \(slot.rawValue) (\(key)) moved with its \(keys) keys from :\(cluster.nodes[source].port) to :\(cluster.nodes[target].port) in \(Self.seconds(ContinuousClock.now - started))"
    }

    /// The replica of `key`'s primary is cut off for `seconds` under load (its credentials for
    /// the primary are made wrong, so that it cannot resync, and the primary drops its link:
    /// `CLIENT KILL TYPE replica`), then `CLUSTER FAILOVER FORCE` promotes it without what it
    /// missed; the old primary turns into its replica and resyncs, discarding what it alone had.
    /// With `--confirm-replicas` the commands of the window answer 503 "may have been applied".
    /// (A one-byte output-buffer limit for replicas lost only 1 write in 3.8 s: each reconnect
    /// delivered part of the backlog.)
    public func forceFailover(of key: String, lagging seconds: Double) async throws -> String {
        let cluster = try requireCluster("forced-failover")
        let slot = HashSlot(key: key)
        let roles = try await cluster.roles()
        guard let primary = try await cluster.primaryIndex(for: slot), let replica = roles.replicasOf[primary]?.first(where: { cluster.nodes[$0].pid != nil }) else {
            throw ChaosError("the primary of \(key)'s slot has no running replica")
        }
        // An AUTH the primary refuses (it has no password; a wrong one where it has) makes
        // Redis abandon each resync attempt; the old value is put back on every path.
        let masterauth = try await cluster.configGet("masterauth", on: replica)
        var missed = 0
        try await cluster.configSet("masterauth", "chaos-cut-off-\(UInt32.random(in: 0...UInt32.max))", on: replica)
        do {
            try await cluster.killReplicaLinks(on: primary)
            await pause(seconds: seconds)
            // The cut must have held, or the fault proved nothing: the link still down, and the
            // replica behind the primary by what the primary took meanwhile.
            let onReplica = try await cluster.replicationInfo(of: replica)
            let onPrimary = try await cluster.replicationInfo(of: primary)
            guard onReplica["master_link_status"] == "down" else {
                throw ChaosError("the replica :\(cluster.nodes[replica].port) was not cut off (master_link_status \(onReplica["master_link_status"] ?? "?"))")
            }
            missed = (Int(onPrimary["master_repl_offset"] ?? "") ?? 0) - (Int(onReplica["master_repl_offset"] ?? "") ?? 0)
            try await cluster.failOver(to: replica, force: true)
        } catch {
            await restore(masterauth, on: replica, in: cluster)
            throw error
        }
        await restore(masterauth, on: replica, in: cluster)
        try await cluster.waitUntilHealthy(timeout: .seconds(60))
        return ":\(cluster.nodes[replica].port) cut off from \(key)'s primary :\(cluster.nodes[primary].port) for \(String(format: "%.1f", seconds)) s (\(missed) bytes of replication missed), then forced over; the old primary resynced as its replica"
    }

    /// Puts a node's `masterauth` back, trying for up to 10 s: a node left with the wrong one
    /// could never resync as a replica again.
    private func restore(_ masterauth: String, on index: Int, in cluster: LocalRedisCluster) async {
        for attempt in 1...50 {
            do {
                try await cluster.configSet("masterauth", masterauth, on: index)
                return
            } catch {
                if attempt == 50 { logger.error("could not restore masterauth on :\(cluster.nodes[index].port): \(error)") }
            }
            await pause(seconds: 0.2)
        }
    }

    /// After the load: every node running, the cluster ok and every replica attached.
    func restoreCluster(_ cluster: LocalRedisCluster) async throws {
        for index in cluster.nodes.indices where cluster.nodes[index].pid == nil {
            try await cluster.restart(index)
            ChildRegistry.add(cluster.nodes[index].pid)
        }
        try await cluster.waitUntilHealthy(timeout: .seconds(60))
    }

    private static func seconds(_ d: Duration) -> String {
        String(format: "%.1f s", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }
}
