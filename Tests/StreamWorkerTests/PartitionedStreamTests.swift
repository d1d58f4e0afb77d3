import Hummingbird
import HummingbirdTesting
import LocalRedis
import RedisClient
@testable import StreamWorker
import TestSupport
import Testing
import WorkerMetricsHTTP

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

    @Test("parse recognises exactly the layout's partition names, and nothing that only looks like one")
    func parseRecognisesExactlyTheLayout() {
        for (name, count) in [("events:{order}_created", 8), ("orders", 2), ("orders", 6), ("a:b", 1024), ("", 3)] {
            let stream = PartitionedStream(name, partitions: count)
            // The logical name recovered is the base, whose partitions are the same streams.
            #expect(PartitionedStream(stream.base, partitions: count).streams == stream.streams)
            for (p, partitionStream) in stream.streams.enumerated() where count < 1024 || p % 100 == 0 || p == count - 1 {
                let parsed = PartitionedStream.parse(partitionStream)
                #expect(parsed == .init(name: stream.base, partitions: count, partition: p, stream: partitionStream), "\(partitionStream)")
            }
        }
        #expect(PartitionedStream("events:{order}_created").base == "events:order_created")

        let real = PartitionedStream("orders", partitions: 6).streams[2]  // orders:2{6.2.<n>}
        let n = Int(real.split(separator: ".").last!.dropLast())!
        let lookAlikes = [
            "orders", "events:{order}_created", "orders:2", "orders:2{}", "{6.2.\(n)}", ":2{6.2.\(n)}x",
            "orders:2{6.2.\(n + 1)}",  // another n: the layout picks the first that fits
            "orders:2{6.2.0\(n)}", "orders:2{06.2.\(n)}", "orders:02{6.02.\(n)}", "orders:2{+6.2.\(n)}",  // not the layout's spelling
            "orders:3{6.2.\(n)}", "orders:2{6.3.\(n)}",  // the partition named twice, differently
            "orders:2{6.2.\(n)}x", "orders:2{6.2.\(n)}}", "orders:2{6.2.\(n).0}", "orders:2{6.2}",
            "{orders}:2{6.2.\(n)}", "ord{ers:2{6.2.\(n)}",  // braces in the base: the layout removes them
            "orders:0{1.0.0}", "orders:6{6.6.0}", "orders:2{1025.2.0}",  // one partition, p >= P, P too large
            "dlq:" + real + ":g", "replay:" + real + ":g",
        ]
        for name in lookAlikes { #expect(PartitionedStream.parse(name) == nil, "\(name) taken for a partition") }
        #expect(PartitionedStream.parse(real)?.name == "orders")
    }

    @Test("/metrics labels a partition's series with its logical stream and partition; a plain stream's keep their two labels")
    func metricsCarryThePartition() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let router = WorkerHTTPServer.buildRouter(client: pool)  // installs the Prometheus backend first
            let events = PartitionedStream("metered", partitions: 3)
            var commands: [XADD] = []
            for i in 0..<60 { commands.append(events.add(key: "entity-\(i)", fields: [StreamField("event_id", "metered-\(i)")])) }
            for result in await pool.pipeline(commands) { _ = try result.get() }
            var perPartition: [Int] = []
            for stream in events.streams { perPartition.append(try await pool.send(XLEN(RedisArgument(stream)))) }
            let published = perPartition
            #expect(published.allSatisfy { $0 > 0 } && published.reduce(0, +) == 60, "\(published)")
            try await publish(pool, stream: "metered-plain", count: 5)
            let worker = RunningWorker(
                pool: pool, configuration: .init(inspectionInterval: .milliseconds(100)),
                subscriptions: [
                    Subscription(stream: "metered", group: "obs", partitions: 3) { _ in .done },
                    Subscription(stream: "metered-plain", group: "obs") { _ in .done },
                ])
            #expect(await eventually { worker.worker.stats[.processed] == 65 })
            try await Application(router: router).test(.router) { client in
                var metrics = ""
                let reported = await eventually {
                    metrics = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
                    return (0..<3).allSatisfy { metrics.contains(#"stream_worker_group_lag{stream="metered",group="obs",partition="\#($0)"}"#) }
                }
                #expect(reported, "\(metrics)")
                for (p, count) in published.enumerated() {
                    #expect(metrics.contains(#"stream_worker_processed_total{stream="metered",group="obs",partition="\#(p)"} \#(count)"#), "\(metrics)")
                    #expect(metrics.contains(#"stream_worker_group_pending{stream="metered",group="obs",partition="\#(p)"}"#))
                }
                // A group's replay stream of a partition: under the logical stream too.
                #expect(metrics.contains(#"stream_worker_processed_total{stream="replay:metered:obs",group="obs",partition="2"} 0"#), "\(metrics)")
                #expect(!metrics.contains("{3."), "a partition stream's own name in a label: \(metrics)")
                #expect(metrics.contains(#"stream_worker_processed_total{stream="metered-plain",group="obs"} 5"#), "\(metrics)")
            }
            try await worker.stop()
            await pool.shutdown()
        }
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
