import LocalRedis
import RedisClient

/// Moves a slot with every key in it from one primary to another (SETSLOT IMPORTING/MIGRATING,
/// MIGRATE, SETSLOT NODE on every node), as `redis-cli --cluster reshard` does.
public func moveSlot(_ slot: HashSlot, in cluster: LocalRedisCluster, from sourceIndex: Int, to targetIndex: Int) async throws {
    func connection(_ index: Int) throws -> RedisConnection { try RedisConnection(configuration: cluster.nodeConfiguration(index)) }
    let onSource = try connection(sourceIndex)
    let onTarget = try connection(targetIndex)
    let sourceID = try await onSource.send(["CLUSTER", "MYID"]).string ?? ""
    let targetID = try await onTarget.send(["CLUSTER", "MYID"]).string ?? ""
    let number = RedisArgument(Int(slot.rawValue))
    try await onTarget.send(["CLUSTER", "SETSLOT", number, "IMPORTING", RedisArgument(sourceID)])
    try await onSource.send(["CLUSTER", "SETSLOT", number, "MIGRATING", RedisArgument(targetID)])
    while true {
        let keys = try await onSource.send(["CLUSTER", "GETKEYSINSLOT", number, "100"]).array ?? []
        if keys.isEmpty { break }
        let reply = try await onSource.send(
            ["MIGRATE", "127.0.0.1", RedisArgument(cluster.nodes[targetIndex].port), "", "0", "5000", "KEYS"]
                + keys.compactMap { $0.bytes.map { RedisArgument(bytes: $0) } })
        guard reply.string == "OK" else { throw RedisError(.unexpectedReply, "MIGRATE answered \(reply)") }
    }
    for index in cluster.nodes.indices {
        let c = try connection(index)
        try await c.send(["CLUSTER", "SETSLOT", number, "NODE", RedisArgument(targetID)])
        await c.close()
    }
    await onSource.close()
    await onTarget.close()
}
