import Foundation
import RedisClient

/// What tests and chaos runs do to a running local cluster: ask who holds a slot, move a slot,
/// fail a replica over, cut a replica off, start a killed node again.
extension LocalRedisCluster {
    /// The cluster's shards as the first live node that answers sees them; `avoiding`: nodes not
    /// to ask (a SIGSTOPped one still accepts connections, and each question would wait out the
    /// command timeout).
    public func shards(avoiding: Set<Int> = []) async throws -> [ClusterShardDescription] {
        var lastError: (any Error)?
        for index in nodes.indices where nodes[index].pid != nil && !avoiding.contains(index) {
            do {
                let connection = try RedisConnection(configuration: nodeConfiguration(index))
                defer { Task { await connection.close() } }
                return try await connection.send(CLUSTERSHARDS())
            } catch {
                lastError = error
            }
        }
        throw lastError ?? LocalRedisError("no node of the cluster is running")
    }

    /// The index in ``nodes`` of the primary that serves `slot` now (nil while none does: its
    /// primary died and no replica has been promoted yet).
    public func primaryIndex(for slot: HashSlot, avoiding: Set<Int> = []) async throws -> Int? {
        let number = Int(slot.rawValue)
        let shard = try await shards(avoiding: avoiding).first { $0.slots.contains { $0.lowerBound <= number && number <= $0.upperBound } }
        guard let primary = shard?.primary, primary.health == "online", let port = primary.port ?? primary.tlsPort else { return nil }
        return index(ofPort: port)
    }

    /// Indices of the primaries serving slots now, and of the replicas of each.
    public func roles() async throws -> (primaries: [Int], replicasOf: [Int: [Int]]) {
        var primaries: [Int] = []
        var replicasOf: [Int: [Int]] = [:]
        for shard in try await shards() where !shard.slots.isEmpty {
            guard let primary = shard.primary, let port = primary.port ?? primary.tlsPort, let p = index(ofPort: port) else { continue }
            primaries.append(p)
            replicasOf[p] = shard.nodes.filter { $0.role == .replica }.compactMap { ($0.port ?? $0.tlsPort).flatMap(index(ofPort:)) }
        }
        return (primaries.sorted(), replicasOf)
    }

    /// Moves a slot with every key in it from one primary to another, as `redis-cli --cluster
    /// reshard` does (``SlotMigration``). Returns how many keys it moved.
    @discardableResult
    public func moveSlot(_ slot: HashSlot, from sourceIndex: Int, to targetIndex: Int) async throws -> Int {
        let migration = try await SlotMigration.begin(slot, in: self, from: sourceIndex, to: targetIndex)
        let moved = try await migration.migrateAll()
        try await migration.finish()
        return moved
    }

    /// `CLUSTER FAILOVER` on a replica: its primary stops taking writes until the replica has
    /// caught up, then the two swap roles. With `force` (`CLUSTER FAILOVER FORCE`): promoted at
    /// once, without the primary's agreement and without catching up with it; what the primary
    /// took meanwhile is discarded when it turns into the new primary's replica. Waits until the
    /// replica says it is a primary.
    public func failOver(to replicaIndex: Int, force: Bool = false, timeout: Duration = .seconds(30)) async throws {
        let connection = try RedisConnection(configuration: nodeConfiguration(replicaIndex))
        defer { Task { await connection.close() } }
        try await connection.send(["CLUSTER", "FAILOVER"] + (force ? ["FORCE"] : [])).throwingServerError()
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await connection.send(INFO(section: "replication"))["role"] == "master" { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw LocalRedisError("node \(addresses[replicaIndex]) was not a primary \(timeout) after CLUSTER FAILOVER\(force ? " FORCE" : "")")
    }

    /// `CONFIG GET name` on one node: its value.
    public func configGet(_ name: String, on index: Int) async throws -> String {
        let reply = try await send(["CONFIG", "GET", RedisArgument(name)], to: index)
        guard let pair = reply.array, pair.count == 2, let value = pair[1].string else { throw LocalRedisError("CONFIG GET \(name) answered \(reply)") }
        return value
    }

    /// `INFO replication` of one node, as fields.
    public func replicationInfo(of index: Int) async throws -> [String: String] {
        let connection = try RedisConnection(configuration: nodeConfiguration(index))
        defer { Task { await connection.close() } }
        return try await connection.send(INFO(section: "replication"))
    }

    /// `CONFIG SET name value` on one node.
    public func configSet(_ name: String, _ value: String, on index: Int) async throws {
        try await send(["CONFIG", "SET", RedisArgument(name), RedisArgument(value)], to: index)
    }

    /// `CLIENT KILL TYPE replica` on a primary: its replicas' links drop (they reconnect and
    /// resync by themselves, unless something stops them).
    public func killReplicaLinks(on index: Int) async throws {
        try await send(["CLIENT", "KILL", "TYPE", "replica"], to: index)
    }

    /// Starts a node again after ``LocalRedisServer/kill()`` (same port, directory and
    /// `nodes.conf`: it rejoins the cluster, as the replica of whoever took its slots).
    public func restart(_ index: Int) async throws {
        try await nodes[index].start()
    }
}
