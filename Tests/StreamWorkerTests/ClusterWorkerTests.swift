import LocalRedis
import RedisClient
@testable import StreamWorker
import Synchronization
import TestSupport
import Testing

/// The worker runtime on a real 3-primary Redis Cluster, through the same client protocol as on
/// one server: every subscription works on its stream's slot (group, markers, dead letters and
/// effects share the stream's hash tag) and its readers read from the primary that owns it.
@Suite("StreamWorker on a Redis Cluster", .serialized)
struct ClusterWorkerTests {
    @Test("streams on three primaries: every effect applied once (duplicates too), nothing pending, dead letters listed and replayed, status per group")
    func workerOnThreePrimaries() async throws {
        try await withWorkerCluster { cluster, client in
            let streams = try await streamsOnEveryPrimary(client)
            let owners = Set(streams.map { client.primary(for: HashSlot(key: $0)) })
            #expect(owners.count == 3, "the streams live on \(owners)")

            let perStream = 300
            var published: [String: [String]] = [:]
            for stream in streams { published[stream] = try await publish(client, stream: stream, count: perStream) }
            // Entities n % 30 == 7 fail as invalid while the flag is set: 10 dead letters per stream.
            let poisoned = perStream / 30
            let poison = Atomic<Bool>(true)
            let handler: StreamHandler = { delivery in
                struct Entity: Decodable { var n: Int }
                let n = try delivery.decodeJSON(Entity.self).n
                if n % 30 == 7 && poison.load(ordering: .acquiring) { throw DeliveryError.invalid("poisoned entity \(n)") }
                return .done(effects: [["HINCRBY", RedisArgument(effectsKey(delivery.stream)), RedisArgument(delivery.eventID), "1"]])
            }
            let subscriptions = streams.map { Subscription(stream: $0, group: "g", handler: handler) }
            let configuration = WorkerConfiguration(lease: .seconds(2))
            let workers = [
                RunningWorker(pool: client, configuration: configuration, subscriptions: subscriptions),
                RunningWorker(pool: client, configuration: configuration, subscriptions: subscriptions),
            ]

            // Everything but the poisoned entries applied once, the poisoned ones dead-lettered.
            let settled = await eventually {
                for stream in streams {
                    guard try await effectCounts(client, effectsKey(stream)).count == perStream - poisoned,
                        try await pendingCount(client, stream: stream, group: "g") == 0,
                        try await DeadLetters(client: client, stream: stream, group: "g").list().count == poisoned
                    else { return false }
                }
                return true
            }
            if !settled { Issue.record("not settled: \(try await summary(client, streams))") }

            // `ordershop status` through the cluster client: each group read on its stream's node.
            let inspector = GroupInspector(client: client)
            for stream in streams {
                let status = try await inspector.groupStatus(stream: stream, group: "g")
                #expect(status.length == perStream)
                #expect(status.pending == 0)
                #expect(status.lag == 0)
                #expect(status.deadLetters == poisoned)
                // The group's consumers as its node lists them: the workers that got entries of
                // it, none holding any. Not both workers in every group: before Redis 7.2 a read
                // that finds nothing (the other worker drained the stream first) does not make
                // its consumer (Redis 7.0.15: one worker drained all three streams in 2 runs of 3).
                let names = Set(workers.map(\.worker.consumerName))
                #expect(!status.consumers.isEmpty && status.consumers.allSatisfy { names.contains($0.name) && $0.pending == 0 }, "consumers: \(status.consumers)")
                let letters = try await DeadLetters(client: client, stream: stream, group: "g").list()
                #expect(letters.allSatisfy { $0.reason.contains("invalid") && $0.error.contains("poisoned") }, "\(letters)")
            }

            // The downstream is fixed: replayed dead letters are applied, once.
            poison.store(false, ordering: .releasing)
            for stream in streams {
                let replayed = try await DeadLetters(client: client, stream: stream, group: "g").replay()
                #expect(replayed.ids.count == poisoned)
            }
            // A publisher retry appends 20 events of every stream again (same event ids).
            for stream in streams {
                let again = try await client.send(XRANGE(RedisArgument(stream), count: 20))
                for result in await client.pipeline(again.map { XADD(RedisArgument(stream), fields: $0.fields) }) { _ = try result.get() }
            }
            let replayedAndDuplicates = await eventually {
                for stream in streams {
                    let counts = try await effectCounts(client, effectsKey(stream))
                    guard counts.count == perStream, try await pendingCount(client, stream: stream, group: "g") == 0,
                        try await inspector.groupStatus(stream: stream, group: "g").lag == 0
                    else { return false }
                }
                return true
            }
            if !replayedAndDuplicates { Issue.record("not settled after the replay: \(try await summary(client, streams))") }

            for worker in workers { try await worker.stop() }
            var totals: [String: Int] = [:]
            for worker in workers { totals.merge(worker.worker.stats.snapshot, uniquingKeysWith: +) }
            for stream in streams {
                let counts = try await effectCounts(client, effectsKey(stream))
                #expect(Set(counts.keys) == Set(published[stream] ?? []), "effects of \(stream) for other events than published")
                #expect(counts.values.allSatisfy { $0 == 1 }, "an effect of \(stream) applied twice: \(counts.filter { $0.value != 1 })")
                let status = try await inspector.groupStatus(stream: stream, group: "g")
                #expect(status.pending == 0 && status.deadLetters == 0)
            }
            #expect(totals["processed"] == 3 * perStream, "\(totals)")
            #expect(totals["dead_lettered"] == 3 * poisoned, "\(totals)")
            #expect((totals["duplicates"] ?? 0) + (totals["already_settled"] ?? 0) >= 3 * 20, "\(totals)")
            _ = cluster
        }
    }

    @Test("a stream's slot moves to another primary under a running worker: its readers follow, nothing is lost or applied twice")
    func readersFollowTheirSlot() async throws {
        try await withWorkerCluster { cluster, client in
            let stream = try await streamsOnEveryPrimary(client)[0]
            let slot = HashSlot(key: stream)
            let source = try #require(client.primary(for: slot))
            let sourceIndex = try #require(cluster.index(ofPort: source.port))
            let targetIndex = cluster.nodes.indices.first { $0 != sourceIndex }!

            let first = try await publish(client, stream: stream, count: 200)
            let worker = RunningWorker(
                pool: client, configuration: WorkerConfiguration(block: .milliseconds(300), lease: .seconds(2)),
                subscriptions: [Subscription(stream: stream, group: "g", handler: countingHandler(effectsKey: effectsKey(stream)))])
            #expect(await eventually { try await effectCounts(client, effectsKey(stream)).count == first.count })

            // The readers are parked in XREADGROUP BLOCK on the source; the slot moves away.
            try await cluster.moveSlot(slot, from: sourceIndex, to: targetIndex)
            #expect(await eventually { try await client.send(XLEN(RedisArgument(stream))) == first.count })
            #expect(client.primary(for: slot)?.port == cluster.nodes[targetIndex].port)

            let second = try await publish(client, stream: stream, count: 200)
            let settled = await eventually {
                guard try await effectCounts(client, effectsKey(stream)).count == first.count + second.count else { return false }
                return try await pendingCount(client, stream: stream, group: "g") == 0
            }
            if !settled { Issue.record("not settled after the slot moved: \(try await summary(client, [stream]))") }
            try await worker.stop()
            let counts = try await effectCounts(client, effectsKey(stream))
            #expect(Set(counts.keys) == Set(first + second))
            #expect(counts.values.allSatisfy { $0 == 1 }, "applied twice: \(counts.filter { $0.value != 1 })")
            #expect(worker.worker.stats.snapshot["processed"] == first.count + second.count)
        }
    }

    @Test("a redirect that reaches the runtime is retried, never blamed on an entry; a cross-slot refusal is not retried")
    func redirectsAreTransient() {
        #expect(FailureKind(RedisError(serverReply: "MOVED 3999 127.0.0.1:6381")) == .transientServer)
        #expect(FailureKind(RedisError(serverReply: "ASK 3999 127.0.0.1:6381")) == .transientServer)
        #expect(FailureKind(RedisError(serverReply: "TRYAGAIN Multiple keys request during rehashing of slot")) == .transientServer)
        #expect(FailureKind(RedisError(serverReply: "CROSSSLOT Keys in request don't hash to the same slot")) == .serverError)
    }

    @Test("the primary of a stream's slot is SIGKILLed: its replica takes over, the worker follows, every effect applied once")
    func workerFollowsFailover() async throws {
        try await withWorkerCluster(replicas: 1) { cluster, client in
            let stream = try await streamsOnEveryPrimary(client)[0]
            let slot = HashSlot(key: stream)
            let oldPrimary = try #require(client.primary(for: slot))
            let shard = try #require(client.shards.first { $0.primary.flatMap { client.address(of: $0) } == oldPrimary })
            let replicaPort = try #require(shard.nodes.first { $0.role == .replica }.flatMap { client.address(of: $0) }?.port)
            let replica = try RedisConnection(configuration: cluster.nodeConfiguration(try #require(cluster.index(ofPort: replicaPort))))
            try await replica.send(["READONLY"])

            let first = try await publish(client, stream: stream, count: 200)
            let worker = RunningWorker(
                pool: client, configuration: WorkerConfiguration(block: .milliseconds(300), lease: .seconds(2)),
                subscriptions: [Subscription(stream: stream, group: "g", handler: countingHandler(effectsKey: effectsKey(stream)))])
            // Settled, and the settles replicated (markers, effects and acks are one script, replicated whole).
            let replicated = await eventually {
                try await replica.send(["HLEN", RedisArgument(effectsKey(stream))]).int == first.count
            }
            #expect(replicated)

            // The readers are parked in XREADGROUP BLOCK on the primary that dies.
            await cluster.nodes[try #require(cluster.index(ofPort: oldPrimary.port))].kill()
            let failedOver = await eventually(timeout: .seconds(60), every: .milliseconds(200)) {
                _ = try? await client.send(XLEN(RedisArgument(stream)))
                return client.primary(for: slot).map { $0 != oldPrimary } ?? false
            }
            #expect(failedOver, "the slot's primary is still \(String(describing: client.primary(for: slot)))")

            let second = try await publish(client, stream: stream, count: 200)
            let settled = await eventually(timeout: .seconds(60)) {
                guard try await effectCounts(client, effectsKey(stream)).count == first.count + second.count else { return false }
                return try await pendingCount(client, stream: stream, group: "g") == 0
            }
            if !settled { Issue.record("not settled after the failover: \(try await summary(client, [stream]))") }
            try await worker.stop()
            await replica.close()
            let counts = try await effectCounts(client, effectsKey(stream))
            #expect(Set(counts.keys) == Set(first + second))
            #expect(counts.values.allSatisfy { $0 == 1 }, "applied twice: \(counts.filter { $0.value != 1 })")
        }
    }
}

/// A 3-primary cluster (without replicas unless asked) and its client, as ``withLocalCluster``.
func withWorkerCluster(
    replicas: Int = 0, _ body: (LocalRedisCluster, RedisClusterClient) async throws -> Void
) async throws {
    var options = LocalRedisCluster.Options()
    options.replicasPerPrimary = replicas
    try await withLocalCluster(options, body)
}

/// One stream name per primary (`orders-<n>` whose slot that primary owns).
private func streamsOnEveryPrimary(_ client: RedisClusterClient) async throws -> [String] {
    try await client.connect()
    let primaries = Set(client.shards.compactMap { $0.primary.flatMap { client.address(of: $0) } })
    var byPrimary: [ClusterNodeAddress: String] = [:]
    var n = 0
    while byPrimary.count < primaries.count {
        let name = "orders-\(n)"
        if let owner = client.primary(for: HashSlot(key: name)), byPrimary[owner] == nil { byPrimary[owner] = name }
        n += 1
    }
    return byPrimary.values.sorted()
}

/// The handlers' effects hash of a stream: in the stream's slot, as the settle script requires.
func effectsKey(_ stream: String) -> String {
    "\(StreamKeys.slotTagged(stream)):effects"
}

/// What each stream's group holds, for failure messages.
private func summary(_ client: any RedisClientProtocol, _ streams: [String]) async throws -> String {
    var out: [String] = []
    for stream in streams {
        let status = try await GroupInspector(client: client).groupStatus(stream: stream, group: "g")
        let applied = try await effectCounts(client, effectsKey(stream)).count
        out.append("\(stream): applied \(applied), pending \(status.pending), lag \(status.lag ?? -1), dead letters \(status.deadLetters)")
    }
    return out.joined(separator: "; ")
}
