import LocalRedis
import RedisClient
import StreamWorker
import Synchronization
import TestSupport
import Testing

/// A Redis at its `maxmemory` with `noeviction` (what OrderShop requires): it refuses every write
/// that may grow memory, and the worker neither loses nor doubles anything, nor sits idle where
/// it could work.
@Suite("A full Redis (maxmemory, noeviction)")
struct FullRedisTests {
    /// A server with a 4 MB limit, and keys without expiry written until it refuses one.
    func withFullRedis(_ body: (LocalRedisServer, RedisConnectionPool) async throws -> Void) async throws {
        var options = LocalRedisServer.Options()
        options.extraArguments = ["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]
        try await withRedisServer(options) { server in
            let pool = try server.makePool()
            try await body(server, pool)
            await pool.shutdown()
        }
    }

    func isFull(_ pool: RedisConnectionPool) async -> Bool {
        do {
            _ = try await pool.send(RawCommand(["SET", "probe", "1"], keys: ["probe"]))
            return false
        } catch {
            return (error as? RedisError)?.code == .outOfMemory
        }
    }

    @Test("a worker started while Redis is full joins its existing group and handles and acknowledges the backlog (plain settles need no memory)")
    func workerStartedWhileFullWorks() async throws {
        try await withFullRedis { _, pool in
            let stream = "orders"
            _ = try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "g", id: "0", makeStream: true))
            try await publish(pool, stream: stream, count: 20)
            try await overfillRedis(pool)
            let handled = Atomic<Int>(0)
            var configuration = WorkerConfiguration(lease: .seconds(5), settleMode: .plain)
            configuration.retryBackoff = Backoff(initial: .milliseconds(50), maximum: .milliseconds(200))
            let worker = RunningWorker(
                pool: pool, configuration: configuration,
                subscriptions: [
                    Subscription(stream: stream, group: "g") { _ in
                        handled.add(1, ordering: .relaxed)
                        return .done
                    }
                ])
            // Before: "cannot create consumer group yet; retrying ... OOM" until memory was freed.
            #expect(await eventually(timeout: .seconds(30)) { handled.load(ordering: .relaxed) >= 20 }, "handled \(handled.load(ordering: .relaxed))")
            #expect(await eventually { try await pendingCount(pool, stream: stream, group: "g") == 0 })
            #expect(await isFull(pool), "the test's premise: Redis refused writes throughout")
            try await worker.stop()
        }
    }

    @Test("an idempotent worker on a full Redis keeps its entries pending (its markers cannot be written) and, once memory is freed, applies each once")
    func idempotentWorkerWaitsAndAppliesOnce() async throws {
        try await withFullRedis { _, pool in
            let stream = "orders"
            _ = try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "g", id: "0", makeStream: true))
            let ids = try await publish(pool, stream: stream, count: 20)
            try await overfillRedis(pool)
            var configuration = WorkerConfiguration(lease: .seconds(5), maxDeliveries: 3)
            configuration.retryBackoff = Backoff(initial: .milliseconds(50), maximum: .milliseconds(200))
            let worker = RunningWorker(
                pool: pool, configuration: configuration, subscriptions: [Subscription(stream: stream, group: "g", handler: countingHandler(effectsKey: "effects"))])
            // Read and handled (reading needs no memory), but not settled: the markers cannot be written.
            #expect(await eventually(timeout: .seconds(30)) { try await pendingCount(pool, stream: stream, group: "g") > 0 })
            try await Task.sleep(for: .seconds(1))
            #expect(try await effectCounts(pool, "effects").isEmpty)
            try await setMaxmemory(pool, "0")
            #expect(await eventually(timeout: .seconds(30)) { try await effectCounts(pool, "effects").count == ids.count })
            #expect(await eventually { try await pendingCount(pool, stream: stream, group: "g") == 0 })
            try await worker.stop()
            #expect(try await effectCounts(pool, "effects") == Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) }))
            // Nothing dead-lettered though every settle was refused for seconds (maxDeliveries 3).
            #expect(try await pool.send(XLEN(RedisArgument(StreamKeys.deadLetter(stream: stream, group: "g")))) == 0)
        }
    }
}
