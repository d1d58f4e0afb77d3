import Foundation
import RedisClient

/// A slot on its way from one primary of a ``LocalRedisCluster`` to another, in the steps of a
/// reshard, which a test can stop between: ``begin(_:in:from:to:)`` (`SETSLOT IMPORTING` on
/// the target, `MIGRATING` on the source), ``migrate(_:)`` (`MIGRATE` of some keys),
/// ``finish()`` (`SETSLOT NODE` on the primaries). Meanwhile clients get ASK for a key already
/// moved and TRYAGAIN for a multi-key command whose keys are on both sides; MOVED once it is done.
public struct SlotMigration: Sendable {
    public let cluster: LocalRedisCluster
    public let slot: HashSlot
    public let sourceIndex: Int
    public let targetIndex: Int
    private let targetID: String

    private var number: RedisArgument { RedisArgument(Int(slot.rawValue)) }

    /// Marks the slot importing on the target and migrating on the source.
    public static func begin(_ slot: HashSlot, in cluster: LocalRedisCluster, from sourceIndex: Int, to targetIndex: Int) async throws -> SlotMigration {
        let sourceID = try await cluster.send(["CLUSTER", "MYID"], to: sourceIndex).string ?? ""
        let targetID = try await cluster.send(["CLUSTER", "MYID"], to: targetIndex).string ?? ""
        let number = RedisArgument(Int(slot.rawValue))
        try await cluster.send(["CLUSTER", "SETSLOT", number, "IMPORTING", RedisArgument(sourceID)], to: targetIndex)
        do {
            try await cluster.send(["CLUSTER", "SETSLOT", number, "MIGRATING", RedisArgument(targetID)], to: sourceIndex)
        } catch {
            // Nothing moved yet: the slot stays where it is, as it was.
            _ = try? await cluster.send(["CLUSTER", "SETSLOT", number, "STABLE"], to: targetIndex)
            throw error
        }
        return SlotMigration(cluster: cluster, slot: slot, sourceIndex: sourceIndex, targetIndex: targetIndex, targetID: targetID)
    }

    /// MIGRATEs `keys` to the target. Once keys have moved there is no going back (they are the
    /// target's now): a failed batch is tried again, up to 10 times, 200 ms apart.
    public func migrate(_ keys: [RedisArgument]) async throws {
        var auth: [RedisArgument] = []
        if let admin = cluster.options.admin {
            auth = admin.username.map { ["AUTH2", RedisArgument($0), RedisArgument(admin.password)] } ?? ["AUTH", RedisArgument(admin.password)]
        }
        let command: [RedisArgument] = ["MIGRATE", "127.0.0.1", RedisArgument(cluster.nodes[targetIndex].port), "", "0", "5000"] + auth + ["KEYS"] + keys
        var attempt = 1
        while true {
            let reply = try await cluster.send(command, to: sourceIndex, throwingServerErrors: false)
            // NOKEY: every key of the batch was deleted (or expired) meanwhile: nothing to move.
            if reply.string == "OK" || reply.string == "NOKEY" { return }
            guard attempt < 10 else { throw LocalRedisError("MIGRATE answered \(reply) \(attempt) times; slot \(slot.rawValue) is left migrating") }
            attempt += 1
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// MIGRATEs every key still in the slot on the source, 100 at a time; how many.
    public func migrateAll() async throws -> Int {
        var moved = 0
        while true {
            let keys = try await cluster.send(["CLUSTER", "GETKEYSINSLOT", number, "100"], to: sourceIndex).array ?? []
            if keys.isEmpty { return moved }
            try await migrate(keys.compactMap { $0.bytes.map { RedisArgument(bytes: $0) } })
            moved += keys.count
        }
    }

    /// Gives the slot to the target: `SETSLOT NODE` on the target first (it owns the slot from
    /// then on), then the source, then the other running primaries (replicas refuse SETSLOT and
    /// learn it by gossip): the order redis-cli uses, so that no node points clients at a node
    /// that refuses them.
    public func finish() async throws {
        let others = try await cluster.roles().primaries.filter { $0 != sourceIndex && $0 != targetIndex && cluster.nodes[$0].pid != nil }
        for index in [targetIndex, sourceIndex] + others {
            try await cluster.send(["CLUSTER", "SETSLOT", number, "NODE", RedisArgument(targetID)], to: index)
        }
    }
}

extension LocalRedisCluster {
    /// One command to one node, on a connection of its own; a server error is thrown unless asked not to.
    @discardableResult
    public func send(_ command: [RedisArgument], to index: Int, throwingServerErrors: Bool = true) async throws -> RESPValue {
        let connection = try RedisConnection(configuration: nodeConfiguration(index))
        defer { Task { await connection.close() } }
        let reply = try await connection.send(RawCommand(command))
        return throwingServerErrors ? try reply.throwingServerError() : reply
    }
}
