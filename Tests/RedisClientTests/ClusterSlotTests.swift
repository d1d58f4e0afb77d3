import LocalRedis
import RedisClient
import TestSupport
import Testing

/// Hash slots and routing on a real 3-primary cluster (no replicas: routing needs none).
@Suite(.serialized) struct ClusterSlotTests {
    static var noReplicas: LocalRedisCluster.Options {
        var o = LocalRedisCluster.Options()
        o.replicasPerPrimary = 0
        return o
    }

    /// Keys of every shape: plain, tagged, empty tags, nested and unbalanced braces, binary.
    static func randomKey<G: RandomNumberGenerator>(_ g: inout G) -> [UInt8] {
        let alphabet = Array("ab{}:x1{}".utf8)
        func word(_ n: Int) -> [UInt8] { (0..<n).map { _ in alphabet.randomElement(using: &g)! } }
        switch Int.random(in: 0..<8, using: &g) {
        case 0: return word(Int.random(in: 1...12, using: &g))
        case 1: return Array("{".utf8) + word(3) + Array("}".utf8) + word(4)  // a tag (maybe with braces inside)
        case 2: return Array("{}".utf8) + word(5)  // empty tag: the whole key hashes
        case 3: return word(2) + Array("{{".utf8) + word(3) + Array("}}".utf8)  // nested
        case 4: return word(3) + Array("}{".utf8) + word(3)  // close before open
        case 5: return (0..<Int.random(in: 1...16, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }  // binary
        case 6: return Array("{user:\(Int.random(in: 0..<1000, using: &g))}:cart".utf8)
        default: return word(4) + Array("{".utf8) + word(3)  // unclosed
        }
    }

    @Test func slotsOfTenThousandKeysMatchClusterKeyslot() async throws {
        try await withLocalCluster(Self.noReplicas) { cluster, _ in
            var g = SystemRandomNumberGenerator()
            let keys = (0..<10_000).map { _ in Self.randomKey(&g) } + [Array("{}".utf8), Array("{}{a}".utf8), Array("{a}{b}".utf8), []]
            let connection = try cluster.connection(0)
            // In pipelines of 1000: one round trip per thousand keys.
            var mismatches: [String] = []
            for chunk in stride(from: 0, to: keys.count, by: 1000) {
                let part = Array(keys[chunk..<min(chunk + 1000, keys.count)])
                let replies = try await connection.pipeline(part.map { ["CLUSTER", "KEYSLOT", RedisArgument(bytes: $0)] })
                for (key, reply) in zip(part, replies) where reply.int != Int(HashSlot(key: key).rawValue) {
                    mismatches.append("\(key): server \(reply), ours \(HashSlot(key: key))")
                }
            }
            await connection.close()
            #expect(mismatches.isEmpty, "\(mismatches.prefix(5))")
            // The spec's reference value.
            #expect(HashSlot(key: "123456789").rawValue == 0x31C3 % 16384)
            #expect(HashSlot(key: "{user1000}.following") == HashSlot(key: "{user1000}.followers"))
        }
    }

    @Test func pipelineOverEveryNodeKeepsOrder() async throws {
        try await withLocalCluster(Self.noReplicas) { cluster, client in
            try await client.connect()
            // Keys until every primary owns at least five of them.
            var keys: [String] = []
            var perNode: [ClusterNodeAddress: Int] = [:]
            var n = 0
            while perNode.count < 3 || perNode.values.contains(where: { $0 < 5 }) {
                let key = "order:\(n)"
                n += 1
                keys.append(key)
                perNode[client.primary(for: HashSlot(key: key))!, default: 0] += 1
            }
            var commands: [any RedisCommand] = []
            for (i, key) in keys.enumerated() {
                commands.append(SET(RedisArgument(key), RedisArgument("value-\(i)")))
                commands.append(INCRBY(RedisArgument(key + ":n"), by: i))
                commands.append(GET(RedisArgument(key)))
            }
            let results = await client.execute(commands)
            #expect(results.count == commands.count)
            for (i, key) in keys.enumerated() {
                #expect(try results[3 * i].get() == .simpleString("OK"), "\(key)")
                #expect(try results[3 * i + 1].get().int == i, "\(key)")
                #expect(try results[3 * i + 2].get().string == "value-\(i)", "\(key)")
            }
            // Typed: a parameter pack over three nodes, each result decoded by its command.
            let a = keys.first { client.primary(for: HashSlot(key: $0)) == Array(perNode.keys)[0] }!
            let b = keys.first { client.primary(for: HashSlot(key: $0)) == Array(perNode.keys)[1] }!
            let (got, length, incremented) = await client.pipeline(
                GET(RedisArgument(a)), XADD(RedisArgument(b + ":s"), fields: [StreamField("f", "v")]), INCRBY(RedisArgument(a + ":n"), by: 1000))
            #expect(try got.get() == Array("value-\(keys.firstIndex(of: a)!)".utf8))
            #expect(try length.get() != nil)
            #expect(try incremented.get() == keys.firstIndex(of: a)! + 1000)
            // An error reply stays in its place and hides nothing.
            let mixed = await client.execute([GET(RedisArgument(a)), RawCommand(["XLEN", RedisArgument(a)], keys: [RedisArgument(a)]), GET(RedisArgument(b))])
            #expect((try? mixed[0].get()) != nil)
            #expect(throws: RedisError.self) { try mixed[1].get() }
            #expect(try mixed[2].get().string == "value-\(keys.firstIndex(of: b)!)")
        }
    }

    @Test func crossSlotRefusedBeforeSending() async throws {
        try await withLocalCluster(Self.noReplicas) { cluster, client in
            let script = RedisScript("redis.call('SET', KEYS[1], 'x'); redis.call('SET', KEYS[2], 'y'); return 1")
            let error = await #expect(throws: RedisError.self) {
                try await client.evaluate(script, keys: ["order:1", "order:2"], arguments: [])
            }
            #expect(error?.code == .crossSlot)
            #expect(error?.message.contains("'order:1' (slot \(HashSlot(key: "order:1")))") == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("'order:2'") == true)
            // Nothing was sent: no node ran (or even loaded) the script, no key exists.
            for index in cluster.nodes.indices {
                let c = try cluster.connection(index)
                let stats = try await c.send(INFO(section: "commandstats"))
                #expect(stats["cmdstat_evalsha"] == nil && stats["cmdstat_script|load"] == nil, "node \(index): \(stats)")
                await c.close()
            }
            #expect(try await client.send(EXISTS("order:1")) == 0)
            // The same keys under one hash tag run.
            #expect(try await client.evaluate(script, keys: ["{order:1}:a", "{order:1}:b"], arguments: []).int == 1)
            #expect(try await client.send(GET("{order:1}:b")) == Array("y".utf8))
            // A transaction and a pipeline step are held to the same rule.
            await #expect(throws: RedisError.self) { try await client.transaction([SET("a", "1"), SET("b", "2")]) }
            let results = await client.execute([DEL("a", "b"), GET("a")])
            #expect(throws: RedisError.self) { try results[0].get() }
            #expect(try results[1].get() == .null)
            let (one, two) = try await client.transaction(SET("{t}a", "1"), INCRBY("{t}b", by: 2))
            #expect(try one.get() == true)
            #expect(try two.get() == 2)
        }
    }
}
