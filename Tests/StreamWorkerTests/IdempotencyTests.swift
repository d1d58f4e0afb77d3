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

    @Test("markers are fields of time-bucketed hashes: one from the previous period still counts, the stale period's hash is unlinked")
    func markerBuckets() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{bucket}_created"
            let ttl = Duration.seconds(86_400)
            let period: Int64 = 86_400_000
            let n = Int64(Date().timeIntervalSince1970 * 1000) / period
            let bucket = { (k: Int64) in StreamKeys.markerBucket(stream: stream, group: "g", bucket: k) }
            #expect(bucket(n) == "idem:events:{bucket}_created:g:\(n)")
            let ids = try await publish(pool, stream: stream, count: 3)
            // A marker settled in the previous period, and a hash from the period before (past its TTL).
            try await pool.send(["HSET", RedisArgument(bucket(n - 1)), RedisArgument(ids[0]), "1"])
            try await pool.send(["HSET", RedisArgument(bucket(n - 2)), "old-event", "1"])
            let worker = RunningWorker(
                pool: pool, configuration: .init(idempotencyTTL: ttl),
                subscriptions: [Subscription(stream: stream, group: "g", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually { try await pendingCount(pool, stream: stream, group: "g") == 0 && worker.worker.stats[.delivered] == 3 })
            try await worker.stop()
            #expect(try await effectCounts(pool, "effects") == [ids[1]: 1, ids[2]: 1])
            #expect(worker.worker.stats[.duplicates] == 1)
            let fields = try await pool.send(["HKEYS", RedisArgument(bucket(n))]).array?.compactMap(\.string) ?? []
            #expect(Set(fields) == [ids[1], ids[2]])
            // Kept at least one TTL, at most two: it expires at the end of the next period.
            let pttl = try await pool.send(["PTTL", RedisArgument(bucket(n))]).int ?? -2
            #expect(pttl > period - 60_000 && pttl <= 2 * period)
            #expect(try await pool.send(["EXISTS", RedisArgument(bucket(n - 2))]).int == 0)
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
