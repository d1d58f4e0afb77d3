import Foundation
import RedisClient
import StreamWorker
import TestSupport
import Testing

@Suite("Idempotent settle")
struct IdempotencyTests {
    @Test("the same event delivered twice applies its Redis effect once")
    func sameEventTwice() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{order}_created"
            // A publisher that retried an append after an unknown outcome: two entries, one event.
            for _ in 0..<2 {
                try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("event_id", "evt-1"), StreamField("entity", "{}")]))
            }
            let worker = RunningWorker(pool: pool, configuration: .init(), subscriptions: [Subscription(stream: stream, group: "billing", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually { try await pendingCount(pool, stream: stream, group: "billing") == 0 && worker.worker.stats[.delivered] == 2 })
            try await worker.stop()
            #expect(try await effectCounts(pool, "effects") == ["evt-1": 1])
            #expect(worker.worker.stats[.processed] == 1)
            #expect(worker.worker.stats[.duplicates] == 1)
        }
    }

    @Test("a redelivered entry whose marker exists is acked as a duplicate and not handled again")
    func redeliveryIsNotHandledAgain() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "s"
            let ids = try await publish(pool, stream: stream, count: 3)
            let first = RunningWorker(pool: pool, configuration: .init(), subscriptions: [Subscription(stream: stream, group: "g", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually { try await effectCounts(pool, "effects").count == 3 })
            try await first.stop()
            // Rewind the group: every entry is delivered again.
            try await pool.send(XGROUPSETID(RedisArgument(stream), group: "g", id: "0"))
            let calls = Recorder<String>()
            let second = RunningWorker(
                pool: pool, configuration: .init(),
                subscriptions: [Subscription(stream: stream, group: "g") { d in calls.append(d.eventID); return .done }])
            #expect(await eventually { second.worker.stats[.duplicates] == 3 })
            try await second.stop()
            #expect(calls.all.isEmpty)
            #expect(try await effectCounts(pool, "effects") == Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) }))
            #expect(try await pendingCount(pool, stream: stream, group: "g") == 0)
        }
    }

    @Test("plain mode acks in batches without markers")
    func plainMode() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await publish(pool, stream: "p", count: 500)
            let worker = RunningWorker(pool: pool, configuration: .init(settleMode: .plain), subscriptions: [Subscription(stream: "p", group: "g") { _ in .done }])
            #expect(await eventually { worker.worker.stats[.processed] == 500 })
            try await worker.stop()
            #expect(try await pendingCount(pool, stream: "p", group: "g") == 0)
            let markers = try await pool.send(["KEYS", "idem:*"]).array ?? []
            #expect(markers.isEmpty)
        }
    }
}
