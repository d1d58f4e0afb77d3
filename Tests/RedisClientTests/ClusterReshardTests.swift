import LocalRedis
import RedisClient
import Synchronization
import TestSupport
import Testing

/// A slot moves from one primary to another (CLUSTER SETSLOT MIGRATING/IMPORTING + MIGRATE)
/// while a client keeps writing to it: no acknowledged write is lost, ASK and MOVED are followed.
@Suite(.serialized) struct ClusterReshardTests {
    @Test func reshardingUnderLoadLosesNoAcknowledgedWrite() async throws {
        try await withLocalCluster(ClusterSlotTests.noReplicas) { cluster, client in
            try await client.connect()
            let tag = "{reshard}"
            let slot = HashSlot(key: tag)
            let source = try #require(client.primary(for: slot))
            let sourceIndex = try #require(cluster.index(ofPort: source.port))
            let targetIndex = cluster.nodes.indices.first { $0 != sourceIndex }!
            let target = cluster.nodes[targetIndex]
            let sourceID = try await cluster.nodeID(sourceIndex)
            let targetID = try await cluster.nodeID(targetIndex)

            // Keys already there, so that the migration takes many MIGRATE steps.
            for i in 0..<300 { try await client.send(SET(RedisArgument("\(tag):old:\(i)"), RedisArgument(i))) }

            let progress = WriterProgress()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var i = 0
                    while !progress.done.load(ordering: .acquiring) {
                        try await client.send(SET(RedisArgument("\(tag):new:\(i)"), RedisArgument(i)))
                        progress.acknowledged.withLock { $0.append(i) }
                        if progress.migrating.load(ordering: .acquiring) { progress.writesDuringMigration.add(1, ordering: .relaxed) }
                        i += 1
                    }
                }
                let onSource = try cluster.connection(sourceIndex)
                let onTarget = try cluster.connection(targetIndex)
                try await Task.sleep(for: .milliseconds(100))
                try await onTarget.send(["CLUSTER", "SETSLOT", RedisArgument(Int(slot.rawValue)), "IMPORTING", RedisArgument(sourceID)])
                try await onSource.send(["CLUSTER", "SETSLOT", RedisArgument(Int(slot.rawValue)), "MIGRATING", RedisArgument(targetID)])
                progress.migrating.store(true, ordering: .releasing)
                // Ten keys per MIGRATE, with pauses: the writer keeps creating keys meanwhile (ASK).
                while true {
                    let keys = try await onSource.send(["CLUSTER", "GETKEYSINSLOT", RedisArgument(Int(slot.rawValue)), "10"]).array ?? []
                    if keys.isEmpty && progress.writesDuringMigration.load(ordering: .relaxed) >= 20 { break }
                    if !keys.isEmpty {
                        let reply = try await onSource.send(
                            ["MIGRATE", "127.0.0.1", RedisArgument(target.port), "", "0", "5000", "KEYS"] + keys.compactMap { $0.bytes.map { RedisArgument(bytes: $0) } })
                        #expect(reply.string == "OK" || reply.string == "NOKEY", "\(reply)")
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
                for index in cluster.nodes.indices {
                    let c = try cluster.connection(index)
                    try await c.send(["CLUSTER", "SETSLOT", RedisArgument(Int(slot.rawValue)), "NODE", RedisArgument(targetID)])
                    await c.close()
                }
                progress.migrating.store(false, ordering: .releasing)
                // Writes go on after the slot moved: the first one meets MOVED.
                let after = progress.acknowledged.withLock { $0.count }
                while progress.acknowledged.withLock({ $0.count }) < after + 50 { try await Task.sleep(for: .milliseconds(10)) }
                progress.done.store(true, ordering: .releasing)
                try await group.waitForAll()
                await onSource.close()
                await onTarget.close()
            }

            let stats = client.statistics
            #expect(stats.ask > 0, "\(stats)")
            #expect(stats.moved > 0, "\(stats)")
            #expect(client.primary(for: slot)?.port == target.port)
            // Every acknowledged write is there, on the new owner.
            let written = progress.acknowledged.withLock { $0 }
            let values = await client.pipeline(written.map { GET(RedisArgument("\(tag):new:\($0)")) })
            var missing: [Int] = []
            for (i, value) in zip(written, values) where (try? value.get()) != Array(String(i).utf8) { missing.append(i) }
            #expect(missing.isEmpty, "\(missing.count) of \(written.count) acknowledged writes missing: \(missing.prefix(10))")
            let old = await client.pipeline((0..<300).map { GET(RedisArgument("\(tag):old:\($0)")) })
            #expect(old.enumerated().allSatisfy { (try? $1.get()) == Array(String($0).utf8) })
            let direct = try cluster.connection(targetIndex)
            #expect(try await direct.send(["CLUSTER", "COUNTKEYSINSLOT", RedisArgument(Int(slot.rawValue))]).int == written.count + 300)
            await direct.close()
        }
    }
}

extension ClusterReshardTests {
    /// A command on several keys of a slot being migrated, all of them gone from the source and
    /// one not yet on the target (a key it would create): the source answers ASK, the target
    /// TRYAGAIN, until the migration ends. The client waits that out within its retry window;
    /// it counted each ASK as a redirect and gave up after five (~0.8 s): a trial's 35-s
    /// migration turned every create of the migrating type into 503 "ASK ... gave up after too
    /// many redirects".
    @Test func aMultiKeyScriptWaitsForASlowMigration() async throws {
        try await withLocalCluster(ClusterSlotTests.noReplicas) { cluster, client in
            try await client.connect()
            let tag = "{slowmove}"
            let slot = HashSlot(key: tag)
            let source = try #require(client.primary(for: slot))
            let sourceIndex = try #require(cluster.index(ofPort: source.port))
            let targetIndex = cluster.nodes.indices.first { $0 != sourceIndex }!
            let sourceID = try await cluster.nodeID(sourceIndex)
            let targetID = try await cluster.nodeID(targetIndex)
            for name in ["a", "b"] { try await client.send(SET(RedisArgument("\(tag):\(name)"), "1")) }
            let onSource = try cluster.connection(sourceIndex)
            let onTarget = try cluster.connection(targetIndex)
            try await onTarget.send(["CLUSTER", "SETSLOT", RedisArgument(Int(slot.rawValue)), "IMPORTING", RedisArgument(sourceID)])
            try await onSource.send(["CLUSTER", "SETSLOT", RedisArgument(Int(slot.rawValue)), "MIGRATING", RedisArgument(targetID)])
            _ = try await onSource.send(
                ["MIGRATE", "127.0.0.1", RedisArgument(cluster.nodes[targetIndex].port), "", "0", "5000", "KEYS", RedisArgument("\(tag):a"), RedisArgument("\(tag):b")])
            let keys = ["a", "b", "c"].map { RedisArgument("\(tag):\($0)") }
            let script = RedisScript("redis.call('SET', KEYS[3], redis.call('GET', KEYS[1]) + redis.call('GET', KEYS[2])); return redis.call('GET', KEYS[3])")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // The migration ends once the client has met more ASKs than the old limit
                    // (it ended after a fixed 2 s, and a loaded run met only 5 in them: the
                    // test's premise, not the client, failed).
                    #expect(await eventually { client.statistics.ask > 5 }, "\(client.statistics)")
                    for index in cluster.nodes.indices {
                        let c = try cluster.connection(index)
                        try await c.send(["CLUSTER", "SETSLOT", RedisArgument(Int(slot.rawValue)), "NODE", RedisArgument(targetID)])
                        await c.close()
                    }
                }
                let reply = try await client.evaluate(script, keys: keys, arguments: [])
                #expect(reply.string == "2", "\(reply)")
                try await group.waitForAll()
            }
            await onSource.close()
            await onTarget.close()
        }
    }
}

/// What the writer and the migrator share.
private final class WriterProgress: Sendable {
    let acknowledged = Mutex<[Int]>([])
    let migrating = Atomic<Bool>(false)
    let done = Atomic<Bool>(false)
    let writesDuringMigration = Atomic<Int>(0)
}
