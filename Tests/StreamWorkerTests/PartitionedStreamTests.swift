import Foundation
import Hummingbird
import HummingbirdTesting
import LocalRedis
import Logging
import RedisClient
@testable import StreamWorker
import Synchronization
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

            let handler = countingInItsPartition
            let subscriptions = [Subscription(stream: "orders", group: "g", partitions: 6, handler: handler)]
            let configuration = WorkerConfiguration(lease: .seconds(2))
            let workers = [
                RunningWorker(pool: client, configuration: configuration, subscriptions: subscriptions),
                RunningWorker(pool: client, configuration: configuration, subscriptions: subscriptions),
            ]
            func applied() async throws -> [String: Int] { try await appliedEffects(client, streams: events.streams, key: effectsKey) }
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

extension PartitionedStreamTests {
    @Test("the partition count changed from 4 to 8 while events are published and consumed: every event applied once, both layouts drained")
    func partitionCountChangedUnderLoad() async throws {
        try await withWorkerCluster { cluster, client in
            try await client.connect()
            let before = PartitionedStream("payments", partitions: 4)
            let after = PartitionedStream("payments", partitions: 8)
            let handler = countingInItsPartition
            // Step 1: the workers consume both layouts.
            var subscription = Subscription(stream: "payments", group: "g", partitions: 8, handler: handler)
            subscription.formerPartitions = [4]
            let configuration = WorkerConfiguration(lease: .seconds(2))
            let workers = (0..<2).map { _ in RunningWorker(pool: client, configuration: configuration, subscriptions: [subscription]) }

            // Step 2 under load: 3,000 events to the old layout, then the publisher switches.
            let perLayout = 3000
            for (layout, offset) in [(before, 0), (after, perLayout)] {
                for first in stride(from: offset, to: offset + perLayout, by: 100) {
                    let batch = (first..<(first + 100)).map { i in
                        layout.add(key: "payment-\(i % 97)", fields: [StreamField("event_id", "payment-event-\(i)")])
                    }
                    for result in await client.pipeline(batch) { _ = try result.get() }
                }
            }
            let streams = Array(Set(before.streams + after.streams))
            #expect(streams.count == 12)
            func applied() async throws -> [String: Int] { try await appliedEffects(client, streams: streams, key: effectsKey) }
            // Step 3: both layouts drained.
            let drained = await eventually {
                guard try await applied().count == 2 * perLayout else { return false }
                for stream in streams where try await pendingCount(client, stream: stream, group: "g") > 0 { return false }
                return true
            }
            if !drained { Issue.record("applied \(try await applied().count) of \(2 * perLayout)") }
            for worker in workers { try await worker.stop() }
            let counts = try await applied()
            #expect(counts.count == 2 * perLayout && counts.values.allSatisfy { $0 == 1 }, "\(counts.filter { $0.value != 1 }.prefix(5))")
            // The old layout's partitions hold only the first 3,000, the new one's only the rest.
            var oldLength = 0
            for stream in before.streams { oldLength += try await client.send(XLEN(RedisArgument(stream))) }
            #expect(oldLength == perLayout)
        }
    }
}

extension PartitionedStreamTests {
    @Test("20,000 events over 8 partitions on 3 primaries, 3 worker processes: one SIGKILLed, one SIGSTOPped past its lease and woken; every effect applied once, nothing pending")
    func processesKilledAndPausedWhileConsumingPartitions() async throws {
        try await withWorkerCluster { cluster, client in
            try await client.connect()
            let events = PartitionedStream("ledger", partitions: 8)
            let total = 20_000
            for first in stride(from: 0, to: total, by: 1000) {
                let batch = (first..<(first + 1000)).map { i in
                    events.add(key: "account-\(i % 500)", fields: [StreamField("event_id", "ledger-\(i)"), StreamField("entity", #"{"n":\#(i)}"#)])
                }
                for result in await client.pipeline(batch) { _ = try result.get() }
            }
            // The probes count applied effects in `<partition stream>:effects` (the partition's slot).
            func applied() async throws -> [String: Int] { try await appliedEffects(client, streams: events.streams, key: { "\($0):effects" }) }
            let probes = try (0..<3).map { _ in
                try ChildProcess(
                    try ordershopExecutable(),
                    [
                        "worker-probe", "--url", cluster.url, "--stream", events.name, "--partitions", "8", "--group", "ledger",
                        "--effects-key", "effects", "--lease-ms", "1000", "--max-in-flight", "32", "--handler-delay-ms", "2",
                    ])
            }
            defer { for probe in probes where probe.isRunning { probe.signal(SIGKILL) } }
            // Mid-drain: one probe dies, one stalls past its lease.
            #expect(await eventually(timeout: .seconds(120)) { try await applied().count >= total / 10 })
            probes[0].signal(SIGKILL)
            probes[1].signal(SIGSTOP)
            try await Task.sleep(for: .milliseconds(2500))
            probes[1].signal(SIGCONT)

            let settled = await eventually(timeout: .seconds(180)) {
                guard try await applied().count == total else { return false }
                for stream in events.streams where try await pendingCount(client, stream: stream, group: "ledger") > 0 { return false }
                return true
            }
            if !settled { Issue.record("applied \(try await applied().count) of \(total)") }
            for probe in probes[1...] { #expect(await probe.stop(signal: SIGTERM, grace: .seconds(30)) == 0, "\(probe.output.suffix(600))") }
            let counts = try await applied()
            #expect(counts.count == total)
            #expect(counts.values.allSatisfy { $0 == 1 }, "applied more than once: \(counts.filter { $0.value != 1 }.prefix(5))")
            // The survivors reclaimed what the dead and the stalled one held.
            let reclaimed = probes[1...].map { probeStats($0)["reclaimed"] ?? 0 }.reduce(0, +)
            #expect(reclaimed > 0, "stats: \(probes[1...].map { probeStats($0) })")
        }
    }
}

extension PartitionedStreamTests {
    @Test("6 partitions share one worker's read-ahead: while entries flow, each XREADGROUP carries a whole read count, as on one stream")
    func partitionsReadWholeReadCounts() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool(maximumConnections: 8)
            let events = PartitionedStream("readahead", partitions: 6)
            let total = 24_000
            var commands: [XADD] = []
            for i in 0..<total {
                commands.append(events.add(key: "order-\(i % 997)", fields: [StreamField("event_id", "e-\(i)"), StreamField("n", "\(i)")]))
                if commands.count == 1000 {
                    for result in await pool.pipeline(commands) { _ = try result.get() }
                    commands = []
                }
            }
            let before = try await pool.send(INFO(section: "commandstats"))
            // 12 readers (2 per partition) share 300 slots of read-ahead, each reading at most
            // 100 (prefetch / (readers + 1)). A reader that took whatever room was free read 50
            // or so at a time (about 47 entries per XREADGROUP here); one that waits for a whole
            // read's worth reads 100, its first (blocking, one entry) and last (empty) reads aside.
            let worker = RunningWorker(
                pool: pool, configuration: WorkerConfiguration(maxInFlight: 64, readCount: 100, prefetch: 300, readers: 2, block: .seconds(5)),
                subscriptions: [Subscription(stream: "readahead", group: "g", partitions: 6, handler: { _ in .done })])
            let drained = await eventually(timeout: .seconds(120)) {
                for stream in events.streams {
                    let status = try await GroupInspector(client: pool).groupStatus(stream: stream, group: "g")
                    guard status.lag == 0, status.pending == 0 else { return false }
                }
                return true
            }
            #expect(drained)
            let after = try await pool.send(INFO(section: "commandstats"))
            try await worker.stop()
            await pool.shutdown()
            func calls(_ info: [String: String]) -> Int {
                let field = (info["cmdstat_xreadgroup"] ?? "").split(separator: ",").first { $0.hasPrefix("calls=") }
                return field.flatMap { Int($0.dropFirst("calls=".count)) } ?? 0
            }
            let reads = calls(after) - calls(before)
            #expect(reads > 0)
            #expect(Double(total) / Double(max(reads, 1)) >= 75, "\(reads) reads for \(total) entries")
        }
    }

    @Test("the default read-ahead is a read per reader and reclaimer of every stream read, each partition counted, capped; one given is kept")
    func defaultReadAheadCountsPartitions() async throws {
        // No connection is made before run(): an unused port is enough.
        let pool = try RedisConnectionPool(configuration: RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: try LocalRedisServer.freePort())))
        defer { Task { await pool.shutdown() } }
        func readAhead(_ configuration: WorkerConfiguration, _ subscriptions: [Subscription]) -> Int {
            StreamWorker(client: pool, configuration: configuration, subscriptions: subscriptions, logger: Logger(label: "test")).configuration.prefetch
        }
        let plain = Subscription(stream: "plain", group: "g") { _ in .done }
        let partitioned = Subscription(stream: "orders", group: "g", partitions: 6) { _ in .done }
        // 100 per read, 2 readers and the reclaimer: 300 per stream.
        #expect(readAhead(WorkerConfiguration(), [plain]) == 300)
        #expect(readAhead(WorkerConfiguration(), [partitioned]) == 6 * 300)
        #expect(readAhead(WorkerConfiguration(readCount: 50, readers: 1), [plain, partitioned]) == 7 * 100)
        // A full set of handlers when that is more.
        #expect(readAhead(WorkerConfiguration(maxInFlight: 5000), [partitioned]) == 5000)
        // At most 10,000 in all, unless one stream's reads or the handlers need more.
        let wide = Subscription(stream: "wide", group: "g", partitions: 64) { _ in .done }
        #expect(readAhead(WorkerConfiguration(), [wide]) == WorkerConfiguration.defaultPrefetchLimit)
        #expect(readAhead(WorkerConfiguration(readCount: 5000), [plain]) == 15_000)
        #expect(readAhead(WorkerConfiguration(maxInFlight: 20_000), [wide]) == 20_000)
        // Given (at init or later): kept as it is.
        #expect(readAhead(WorkerConfiguration(prefetch: 500), [partitioned]) == 500)
        var set = WorkerConfiguration()
        set.prefetch = 400
        #expect(readAhead(set, [partitioned]) == 400)
    }

    @Test("one worker with one reader and one handler lane per partition: each entity's events handled in the order they were published")
    func oneWorkerHandlesEachEntityInOrder() async throws {
        try await withWorkerCluster { cluster, client in
            try await client.connect()
            let events = PartitionedStream("shipments", partitions: 4)
            let entities = 50
            let perEntity = 40
            var commands: [XADD] = []
            for seq in 0..<perEntity {
                for entity in 0..<entities {
                    commands.append(events.add(key: "shipment-\(entity)", fields: [StreamField("key", "shipment-\(entity)"), StreamField("seq", "\(seq)")]))
                }
            }
            for result in await client.pipeline(commands) { _ = try result.get() }
            // The handler appends each event's sequence number to its entity's list, in the
            // partition's slot, with the ack.
            let handler: StreamHandler = { delivery in
                let key = "\(delivery.stream):order:\(delivery.string("key") ?? "")"
                return .done(effects: [["RPUSH", RedisArgument(key), RedisArgument(delivery.string("seq") ?? "")]])
            }
            let worker = RunningWorker(
                pool: client, configuration: WorkerConfiguration(maxInFlight: 1, readers: 1),
                subscriptions: [Subscription(stream: "shipments", group: "g", partitions: 4, handler: handler)])
            let drained = await eventually {
                for stream in events.streams {
                    let status = try await GroupInspector(client: client).groupStatus(stream: stream, group: "g")
                    guard status.lag == 0, status.pending == 0 else { return false }
                }
                return true
            }
            #expect(drained)
            try await worker.stop()
            for entity in 0..<entities {
                let key = "shipment-\(entity)"
                let list = "\(events.stream(forKey: key)):order:\(key)"
                let seen = try await client.send(RawCommand(["LRANGE", RedisArgument(list), "0", "-1"], keys: [RedisArgument(list)], readOnly: true))
                #expect((seen.array ?? []).compactMap { $0.string.flatMap { Int($0) } } == Array(0..<perEntity), "\(key)")
            }
        }
    }
}

/// The applied-effect count per event id over the partitions' effect hashes.
private func appliedEffects(_ client: any RedisClientProtocol, streams: [String], key: (String) -> String) async throws -> [String: Int] {
    var all: [String: Int] = [:]
    for stream in streams { all.merge(try await effectCounts(client, key(stream))) { a, b in a + b } }
    return all
}

extension PartitionedStreamTests {
    @Test("a partition's slot migrates to another primary while events are published and two workers consume: nothing lost, nothing applied twice")
    func partitionMigratesWhileConsumed() async throws {
        try await withWorkerCluster { cluster, client in
            try await client.connect()
            let events = PartitionedStream("transfers", partitions: 6)
            let moving = HashSlot(key: events.streams[0])
            let source = try #require(client.primary(for: moving))
            let sourceIndex = try #require(cluster.index(ofPort: source.port))
            let targetIndex = cluster.nodes.indices.first { $0 != sourceIndex }!

            let handler = countingInItsPartition
            let subscription = Subscription(stream: "transfers", group: "g", partitions: 6, handler: handler)
            let configuration = WorkerConfiguration(block: .milliseconds(300), lease: .seconds(2))
            let workers = (0..<2).map { _ in RunningWorker(pool: client, configuration: configuration, subscriptions: [subscription]) }

            // The publisher runs in batches while the slot moves; batches refused for a moment
            // (the slot in flux) are sent again: a refused XADD did not run.
            let total = 6000
            let published = Atomic<Int>(0)
            let publisher = Task {
                for first in stride(from: 0, to: total, by: 50) {
                    var batch = (first..<(first + 50)).map { i in
                        events.add(key: "transfer-\(i % 101)", fields: [StreamField("event_id", "transfer-\(i)")])
                    }
                    while !batch.isEmpty {
                        let results = await client.pipeline(batch)
                        batch = zip(batch, results).compactMap { command, result in
                            guard case .failure(let error) = result else { return nil }
                            return error.commandDidNotRun ? command : nil
                        }
                        try await Task.sleep(for: .milliseconds(5))
                    }
                    published.add(50, ordering: .relaxed)
                }
            }
            func applied() async throws -> [String: Int] { try await appliedEffects(client, streams: events.streams, key: effectsKey) }
            // A third published and being consumed: the slot moves under both.
            let underWay = await eventually {
                guard published.load(ordering: .relaxed) >= total / 3 else { return false }
                return try await applied().count > 0
            }
            #expect(underWay)
            let redirectsBefore = client.statistics.moved + client.statistics.ask
            try await cluster.moveSlot(moving, from: sourceIndex, to: targetIndex)
            #expect(published.load(ordering: .relaxed) < total, "the publisher finished before the slot moved")
            try await publisher.value
            let followed = await eventually {
                _ = try? await client.send(XLEN(RedisArgument(events.streams[0])))
                return client.primary(for: moving)?.port == cluster.nodes[targetIndex].port
            }
            #expect(followed, "the client still sends slot \(moving) to \(String(describing: client.primary(for: moving)))")
            #expect(client.statistics.moved + client.statistics.ask > redirectsBefore, "no redirect was followed: \(client.statistics)")

            let settled = await eventually(timeout: .seconds(60)) {
                guard try await applied().count == total else { return false }
                for stream in events.streams where try await pendingCount(client, stream: stream, group: "g") > 0 { return false }
                return true
            }
            if !settled { Issue.record("applied \(try await applied().count) of \(total)") }
            for worker in workers { try await worker.stop() }
            let counts = try await applied()
            #expect(counts.count == total)
            #expect(counts.values.allSatisfy { $0 == 1 }, "applied more than once: \(counts.filter { $0.value != 1 }.prefix(5))")
            for stream in events.streams {
                #expect(try await DeadLetters(client: client, stream: stream, group: "g").list().isEmpty, "\(stream) has dead letters")
            }
        }
    }
}

/// A handler that commits `HINCRBY <its partition's effects hash> event_id 1` with the ack.
private let countingInItsPartition: StreamHandler = { delivery in
    .done(effects: [["HINCRBY", RedisArgument(effectsKey(delivery.stream)), RedisArgument(delivery.eventID), "1"]])
}
