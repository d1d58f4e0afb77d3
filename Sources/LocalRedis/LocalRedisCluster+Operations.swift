import Foundation
import RedisClient

/// What tests and chaos runs do to a running local cluster: ask who holds a slot, move a slot,
/// fail a replica over, start a killed node again.
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

    /// Moves a slot with every key in it from one primary to another (SETSLOT IMPORTING/MIGRATING,
    /// MIGRATE, SETSLOT NODE on every running node), as `redis-cli --cluster reshard` does. Clients
    /// meanwhile get ASK (a key already moved) and TRYAGAIN (a multi-key command whose keys are on
    /// both sides) and MOVED once it is done. Returns how many keys it moved.
    @discardableResult
    public func moveSlot(_ slot: HashSlot, from sourceIndex: Int, to targetIndex: Int) async throws -> Int {
        func connection(_ index: Int) throws -> RedisConnection { try RedisConnection(configuration: nodeConfiguration(index)) }
        let onSource = try connection(sourceIndex)
        let onTarget = try connection(targetIndex)
        defer {
            Task {
                await onSource.close()
                await onTarget.close()
            }
        }
        let sourceID = try await onSource.send(["CLUSTER", "MYID"]).string ?? ""
        let targetID = try await onTarget.send(["CLUSTER", "MYID"]).string ?? ""
        let number = RedisArgument(Int(slot.rawValue))
        try await onTarget.send(["CLUSTER", "SETSLOT", number, "IMPORTING", RedisArgument(sourceID)]).throwingServerError()
        do {
            try await onSource.send(["CLUSTER", "SETSLOT", number, "MIGRATING", RedisArgument(targetID)]).throwingServerError()
        } catch {
            // Nothing moved yet: the slot stays where it is, as it was.
            _ = try? await onTarget.send(["CLUSTER", "SETSLOT", number, "STABLE"])
            throw error
        }
        var auth: [RedisArgument] = []
        if let admin = options.admin {
            auth = admin.username.map { ["AUTH2", RedisArgument($0), RedisArgument(admin.password)] } ?? ["AUTH", RedisArgument(admin.password)]
        }
        var moved = 0
        while true {
            let keys = try await onSource.send(["CLUSTER", "GETKEYSINSLOT", number, "100"]).array ?? []
            if keys.isEmpty { break }
            // Once keys have moved there is no going back (they are the target's now): a failed
            // batch is tried again, and only a slot that will not move at all is an error.
            var attempt = 1
            while true {
                let reply = try await onSource.send(
                    ["MIGRATE", "127.0.0.1", RedisArgument(nodes[targetIndex].port), "", "0", "5000"] + auth + ["KEYS"]
                        + keys.compactMap { $0.bytes.map { RedisArgument(bytes: $0) } })
                // NOKEY: every key of the batch was deleted (or expired) meanwhile: nothing to move.
                if reply.string == "OK" || reply.string == "NOKEY" { break }
                guard attempt < 10 else {
                    throw LocalRedisError("MIGRATE answered \(reply) \(attempt) times; slot \(slot.rawValue) is left migrating (\(moved) keys moved)")
                }
                attempt += 1
                try await Task.sleep(for: .milliseconds(200))
            }
            moved += keys.count
        }
        // The target first (it owns the slot from then on), then the source, then the other
        // primaries (replicas refuse SETSLOT and learn it by gossip): the order redis-cli uses,
        // so that no node points clients at a node that refuses them.
        let others = try await roles().primaries.filter { $0 != sourceIndex && $0 != targetIndex && nodes[$0].pid != nil }
        for index in [targetIndex, sourceIndex] + others {
            let c = try connection(index)
            defer { Task { await c.close() } }
            try await c.send(["CLUSTER", "SETSLOT", number, "NODE", RedisArgument(targetID)]).throwingServerError()
        }
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
        let connection = try RedisConnection(configuration: nodeConfiguration(index))
        defer { Task { await connection.close() } }
        let reply = try await connection.send(["CONFIG", "GET", RedisArgument(name)]).throwingServerError()
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
        let connection = try RedisConnection(configuration: nodeConfiguration(index))
        defer { Task { await connection.close() } }
        try await connection.send(["CONFIG", "SET", RedisArgument(name), RedisArgument(value)]).throwingServerError()
    }

    /// `CLIENT KILL TYPE replica` on a primary: its replicas' links drop (they reconnect and
    /// resync by themselves, unless something stops them).
    public func killReplicaLinks(on index: Int) async throws {
        let connection = try RedisConnection(configuration: nodeConfiguration(index))
        defer { Task { await connection.close() } }
        try await connection.send(["CLIENT", "KILL", "TYPE", "replica"]).throwingServerError()
    }

    /// Starts a node again after ``LocalRedisServer/kill()`` (same port, directory and
    /// `nodes.conf`: it rejoins the cluster, as the replica of whoever took its slots).
    public func restart(_ index: Int) async throws {
        try await nodes[index].start()
    }
}
