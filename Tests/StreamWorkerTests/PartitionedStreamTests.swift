import LocalRedis
import RedisClient
@testable import StreamWorker
import TestSupport
import Testing

/// A logical stream spread over partitions (``PartitionedStream``), consumed by the same
/// workers on a real Redis Cluster.
@Suite("Partitioned streams", .serialized)
struct PartitionedStreamTests {
    @Test("the layout: one partition keeps the name; P partitions lie in P equal slot ranges, each with its keys in its slot")
    func layout() {
        #expect(PartitionedStream("orders").streams == ["orders"])
        #expect(PartitionedStream("events:{order}_created").streams == ["events:{order}_created"])
        let events = PartitionedStream("events:{order}_created", partitions: 8)
        #expect(Set(events.streams).count == 8)
        for (p, stream) in events.streams.enumerated() {
            let slot = HashSlot(key: stream)
            #expect((p * 2048..<(p + 1) * 2048).contains(Int(slot.rawValue)), "\(stream): slot \(slot)")
            #expect(stream.hasPrefix("events:order_created:\(p){8.\(p)."), "\(stream)")
            for key in [
                StreamKeys.deadLetter(stream: stream, group: "g"), StreamKeys.replay(stream: stream, group: "g"),
                StreamKeys.markerBucket(stream: stream, group: "g", bucket: 7),
            ] {
                #expect(HashSlot(key: key) == slot, "\(key)")
            }
        }
        // The documented partition function: the key's cluster slot mod P.
        for key in ["order-1", "customer:42", "{tagged}x", "{tagged}y", ""] {
            #expect(events.partition(forKey: key) == Int(HashSlot(key: key).rawValue) % 8)
        }
        #expect(events.partition(forKey: "{tagged}x") == events.partition(forKey: "{tagged}y"))
        // The same names every time (another process, another language).
        #expect(PartitionedStream("events:{order}_created", partitions: 8).streams == events.streams)
    }

    @Test("3,000 events of 300 entities over 6 partitions on 3 primaries, two workers: each entity in one partition in publish order, every effect once, nothing pending")
    func workersConsumeEveryPartition() async throws {
        try await withWorkerCluster { cluster, client in
            try await client.connect()
            let events = PartitionedStream("orders", partitions: 6)
            let owners = Dictionary(grouping: events.streams) { client.primary(for: HashSlot(key: $0))! }
            #expect(owners.count == 3 && owners.values.allSatisfy { $0.count == 2 }, "\(owners)")

            let entities = 300
            let perEntity = 10
            var commands: [XADD] = []
            for seq in 0..<perEntity {
                for entity in 0..<entities {
                    let key = "order-\(entity)"
                    commands.append(events.add(key: key, fields: [StreamField("event_id", "\(key)/\(seq)"), StreamField("key", key), StreamField("seq", "\(seq)")]))
                }
            }
            for result in await client.pipeline(commands) { _ = try result.get() }
            // Each entity's events are in its partition, in the order they were published.
            for (p, stream) in events.streams.enumerated() {
                var lastSeq: [String: Int] = [:]
                for entry in try await client.send(XRANGE(RedisArgument(stream))) {
                    let key = String(decoding: entry.fields.first { $0.name == "key" }!.value, as: UTF8.self)
                    let seq = Int(String(decoding: entry.fields.first { $0.name == "seq" }!.value, as: UTF8.self))!
                    #expect(events.partition(forKey: key) == p)
                    #expect(seq == (lastSeq[key] ?? -1) + 1, "\(key) in \(stream)")
                    lastSeq[key] = seq
                }
            }

            let handler: StreamHandler = { delivery in
                .done(effects: [["HINCRBY", RedisArgument(effectsKey(delivery.stream)), RedisArgument(delivery.eventID), "1"]])
            }
            let subscriptions = [Subscription(stream: "orders", group: "g", partitions: 6, handler: handler)]
            let configuration = WorkerConfiguration(lease: .seconds(2))
            let workers = [
                RunningWorker(pool: client, configuration: configuration, subscriptions: subscriptions),
                RunningWorker(pool: client, configuration: configuration, subscriptions: subscriptions),
            ]
            func applied() async throws -> [String: Int] {
                var all: [String: Int] = [:]
                for stream in events.streams { all.merge(try await effectCounts(client, effectsKey(stream))) { a, b in a + b } }
                return all
            }
            let settled = await eventually {
                guard try await applied().count == entities * perEntity else { return false }
                for stream in events.streams where try await pendingCount(client, stream: stream, group: "g") > 0 { return false }
                return true
            }
            if !settled { Issue.record("applied \(try await applied().count) of \(entities * perEntity)") }
            for worker in workers { try await worker.stop() }
            let counts = try await applied()
            #expect(counts.count == entities * perEntity)
            #expect(counts.values.allSatisfy { $0 == 1 }, "applied more than once: \(counts.filter { $0.value != 1 }.prefix(5))")
            // Both workers took part (one consumer per worker in every partition's group).
            for stream in events.streams {
                let status = try await GroupInspector(client: client).groupStatus(stream: stream, group: "g")
                #expect(status.pending == 0 && status.lag == 0, "\(stream): \(status)")
            }
        }
    }
}
