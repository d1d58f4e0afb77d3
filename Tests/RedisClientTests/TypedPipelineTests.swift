@testable import RedisClient
import TestSupport
import Testing

/// `pipeline([Command])`: commands of one type written in place, replies decoded in place, on
/// one server and on a cluster; an error reply stays in its place.
@Suite struct TypedPipelineTests {
    @Test func onOneServer() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            _ = try await pool.send(SET("text", "x"))
            let commands = (0..<50).map { XADD("s", fields: [StreamField("n", "\($0)")]) }
                + [XADD("text", fields: [StreamField("f", "v")]), XADD("missing", fields: [StreamField("f", "v")], noMakeStream: true)]
            let results = await pool.pipeline(commands)
            #expect(results.count == 52)
            let ids = try results.prefix(50).map { try #require(try $0.get()) }
            #expect(ids == ids.sorted { StreamID($0)! < StreamID($1)! } && Set(ids).count == 50)
            #expect(throws: RedisError.self) { try results[50].get() }  // WRONGTYPE, in its place
            #expect(try results[51].get() == nil)  // NOMKSTREAM found no stream
            let entries = try await pool.send(XRANGE("s"))
            #expect(entries.map(\.id.description) == ids)
            #expect(entries.map { String(decoding: $0.fields[0].value, as: UTF8.self) } == (0..<50).map { "\($0)" })
            await pool.shutdown()
        }
    }

    @Test func overEveryNodeOfACluster() async throws {
        try await withLocalCluster(ClusterSlotTests.noReplicas) { cluster, client in
            try await client.connect()
            var keys: [String] = []
            var owners: Set<ClusterNodeAddress> = []
            var n = 0
            while owners.count < 3 || keys.count < 30 {
                let key = "typed:\(n)"
                n += 1
                keys.append(key)
                owners.insert(client.primary(for: HashSlot(key: key))!)
            }
            _ = try await client.send(SET(RedisArgument(keys[1]), "x"))
            let commands = keys.enumerated().map { i, key in XADD(RedisArgument(key), fields: [StreamField("i", "\(i)")]) }
            let results = await client.pipeline(commands)
            #expect(results.count == keys.count)
            #expect(throws: RedisError.self) { try results[1].get() }  // WRONGTYPE, in its place
            for (i, key) in keys.enumerated() where i != 1 {
                let id = try #require(try results[i].get())
                let entries = try await client.send(XRANGE(RedisArgument(key)))
                #expect(entries.map(\.id.description) == [id], "\(key)")
                #expect(entries.first.map { String(decoding: $0.fields[0].value, as: UTF8.self) } == "\(i)")
            }
        }
    }

    /// A task pinned to a node's connection sends that node's commands on the thread it runs on
    /// (the pool lends it that connection), and reaches the other nodes as usual.
    @Test func pinnedToANodeOfACluster() async throws {
        try await withLocalCluster(ClusterSlotTests.noReplicas) { cluster, client in
            try await client.connect()
            let here = "pinned:{a}"
            var elsewhere = "pinned:0"
            var n = 0
            while client.primary(for: HashSlot(key: elsewhere)) == client.primary(for: HashSlot(key: here)) {
                n += 1
                elsewhere = "pinned:\(n)"
            }
            let key = RedisArgument(here)
            let (pinnedHere, pinnedElsewhere, results) = try await client.withPinnedExecution(forKeys: [key]) {
                // An ordinary caller takes the pinned connection (the last one returned) and
                // holds it, so this task gets another; the pinned one comes back first and the
                // other after it: only the pool's preference lends the pinned one next.
                let (holding, held) = AsyncStream<Void>.makeStream()
                let (release, released) = AsyncStream<Void>.makeStream()
                let holder = Task(executorPreference: globalConcurrentExecutor) {
                    try await client.withConnection(forKeys: [key]) { connection in
                        held.yield()
                        for await _ in release { break }
                    }
                }
                for await _ in holding { break }
                try await client.withConnection(forKeys: [key]) { _ in
                    released.yield()
                    try await holder.value
                }
                let a = try await client.withConnection(forKeys: [key]) { $0.isPinnedHere }
                let b = try await client.withConnection(forKeys: [RedisArgument(elsewhere)]) { $0.isPinnedHere }
                let results = await client.pipeline((0..<10).map { XADD(RedisArgument($0 % 2 == 0 ? here : elsewhere), fields: [StreamField("n", "\($0)")]) })
                return (a, b, results)
            }
            #expect(pinnedHere && !pinnedElsewhere)
            #expect(results.allSatisfy { (try? $0.get()) != nil })
            #expect(try await client.send(XLEN(RedisArgument(here))) == 5)
            #expect(try await client.send(XLEN(RedisArgument(elsewhere))) == 5)
        }
    }
}
