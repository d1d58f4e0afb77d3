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
                subscriptions: [Subscription(stream: stream, group: "g") { _ in .done }])
            let name = worker.worker.consumerName
            @Sendable func consumers(_ key: String) async throws -> [String] {
                try await pool.send(XINFOCONSUMERS(RedisArgument(key), group: "g")).map(\.name)
            }
            // Nothing was ever delivered: Redis alone would list no consumer in either group.
            #expect(await eventually { (try? await consumers(stream)) == [name] })
            #expect(await eventually { (try? await consumers(replay)) == [name] })
            // Another worker's clean-up removed it (idle, holding nothing): listed again.
            #expect(try await pool.send(XGROUPDELCONSUMER(RedisArgument(stream), group: "g", consumer: name)) == 0)
            #expect(try await consumers(stream).isEmpty)
            #expect(await eventually { (try? await consumers(stream)) == [name] })
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
