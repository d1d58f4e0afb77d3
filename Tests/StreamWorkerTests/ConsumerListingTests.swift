import LocalRedis
import RedisClient
@testable import StreamWorker
import TestSupport
import Testing

/// A worker is listed in its groups while it reads (``GroupMembership/announceWhileReading()``),
/// though Redis lists a consumer only once an entry was delivered to it.
@Suite("Listed in the group while reading")
struct ConsumerListingTests {
    @Test("a worker on a quiet stream is listed in its group and its replay stream's, again after another worker's clean-up removed it, and not after it left")
    func aQuietWorkerIsListedUntilItLeaves() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{listed}_created"
            let replay = StreamKeys.replay(stream: stream, group: "g")
            let worker = RunningWorker(
                pool: pool, configuration: .init(inspectionInterval: .milliseconds(100)),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { _ in
                        try await Task.sleep(for: .seconds(3))
                        return .done
                    }
                ])
            let name = worker.worker.consumerName
            @Sendable func consumers(_ key: String) async throws -> [String] {
                try await pool.send(XINFOCONSUMERS(RedisArgument(key), group: "g")).map(\.name)
            }
            @Sendable func idle(_ key: String, _ consumer: String) async throws -> Int? {
                let listed = try await pool.send(XINFOCONSUMERS(RedisArgument(key), group: "g"))
                return listed.first { $0.name == consumer }?.idleMilliseconds
            }
            // Nothing was ever delivered: Redis alone would list no consumer in either group.
            #expect(await eventually { (try? await consumers(stream)) == [name] })
            #expect(await eventually { (try? await consumers(replay)) == [name] })
            // Seen while it reads, though nothing is delivered: its idle time comes back down
            // (on Redis 7.0 a blocked read leaves it growing from the last delivery, and the
            // other workers' clean-up then removed the live consumer as if dead).
            try await Task.sleep(for: .milliseconds(1_500))
            #expect(await eventually { (try? await idle(stream, name)).map { $0 < 1_000 } ?? false })
            // Another worker's clean-up removed it (idle, holding nothing): listed again.
            #expect(try await pool.send(XGROUPDELCONSUMER(RedisArgument(stream), group: "g", consumer: name)) == 0)
            #expect(await eventually { (try? await consumers(stream)) == [name] })
            // Holding an entry (its handler takes 3 s), it is left as it is: no read of its
            // history delivers the entry again (its delivery count would go up at each round).
            try await publish(pool, stream: stream, count: 1)
            #expect(await eventually { (try? await pool.send(XPENDINGDetail(RedisArgument(stream), group: "g", count: 10)).count) == 1 })
            try await Task.sleep(for: .milliseconds(600))
            let pending = try await pool.send(XPENDINGDetail(RedisArgument(stream), group: "g", count: 10))
            #expect(pending.map(\.consumer) == [name])
            #expect(pending.first?.deliveryCount == 1)
            // A graceful stop leaves both groups, and nothing lists it again afterwards.
            try await worker.stop()
            #expect(try await consumers(stream).isEmpty)
            #expect(try await consumers(replay).isEmpty)
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await consumers(stream).isEmpty)
            #expect(try await consumers(replay).isEmpty)
            await pool.shutdown()
        }
    }
}
