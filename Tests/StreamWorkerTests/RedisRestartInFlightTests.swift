import Foundation
import LocalRedis
import RedisClient
import StreamWorker
import TestSupport
import Testing

/// Redis SIGKILLed and restarted (AOF on), with the precondition checked (it replaces the former
/// `RecoveryTests.redisRestart`, which never checked it): Redis is killed while the worker
/// holds entries inside their handlers (pending, effects not committed), so the restart meets
/// work in flight, and every entry is still applied exactly once.
@Suite struct RedisRestartInFlightTests {
    @Test("kill -9 redis-server while entries are in flight: each is applied exactly once after the restart")
    func redisRestartWithEntriesInFlight() async throws {
        var options = LocalRedisServer.Options()
        options.appendOnly = true
        options.appendFsync = "always"
        try await withRedisServer(options) { server in
            let pool = try server.makePool()
            let stream = "events:{billing}_created"
            let ids = try await publish(pool, stream: stream, count: 2000)
            let worker = RunningWorker(
                pool: pool, configuration: .init(lease: .seconds(1)),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { d in
                        // Long enough that many entries are inside a handler at any moment.
                        try await Task.sleep(for: .milliseconds(20))
                        return .done(effects: [["HINCRBY", "effects", RedisArgument(d.eventID), "1"]])
                    }
                ])
            #expect(await eventually { ((try? await effectCounts(pool, "effects").count) ?? 0) > 200 })
            // The moment of the kill: entries are pending (delivered, not settled) and not all done.
            var inFlight = 0
            #expect(await eventually {
                inFlight = (try? await pendingCount(pool, stream: stream, group: "g")) ?? 0
                return inFlight > 0
            })
            let appliedAtKill = try await effectCounts(pool, "effects").count
            await server.kill()
            #expect(inFlight > 0, "entries were in flight when Redis died")
            #expect(appliedAtKill < ids.count, "work remained when Redis died")
            try await Task.sleep(for: .milliseconds(300))
            try await server.start()
            // The pending list survived (AOF): the in-flight entries come back to be settled.
            #expect(await eventually(timeout: .seconds(90)) { (try? await effectCounts(pool, "effects").count) == ids.count })
            #expect(await eventually { (try? await pendingCount(pool, stream: stream, group: "g")) == 0 })
            try await worker.stop()
            let counts = try await effectCounts(pool, "effects")
            #expect(Set(counts.keys) == Set(ids))
            #expect(counts.values.allSatisfy { $0 == 1 })
        }
    }
}
