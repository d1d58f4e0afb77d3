import Foundation
import LocalRedis
import RedisClient
import StreamWorker
import TestSupport
import Testing

@Suite("Redis restarts, trims, deleted groups, membership")
struct RecoveryTests {
    @Test("a trim while entries are pending keeps them; a cap that would cut them is refused")
    func safeTrimKeepsPending() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "t"
            try await publish(pool, stream: stream, count: 100)
            try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "slow", id: "0"))
            try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "fast", id: "0"))
            // "slow" holds the first 10 pending; "fast" has read and acked everything.
            let held = try await pool.send(XREADGROUP(group: "slow", consumer: "c", streams: [(stream, ">")], count: 10))[0].entries
            let all = try await pool.send(XREADGROUP(group: "fast", consumer: "c", streams: [(stream, ">")], count: 1000))[0].entries
            try await pool.send(XACK(RedisArgument(stream), group: "fast", ids: all.map(\.id)))

            let retention = StreamRetention(client: pool)
            let result = try await retention.trim(stream: stream, maxLength: 5)
            #expect(result.capRefused)
            #expect(result.removed == 0)
            #expect(result.keptFrom == held[0].id)
            #expect(try await pool.send(XLEN(RedisArgument(stream))) == 100)

            // Settle entries 1-4 of "slow": its oldest pending is still the first entry.
            try await pool.send(XACK(RedisArgument(stream), group: "slow", ids: held[1..<5].map(\.id)))
            let second = try await retention.trim(stream: stream)
            #expect(second.removed == 0, "slow's oldest pending is still the first entry")
            // Settle the first: now the oldest needed entry is the sixth.
            try await pool.send(XACK(RedisArgument(stream), group: "slow", ids: [held[0].id]))
            let third = try await retention.trim(stream: stream)
            #expect(third.removed == 5)
            let remaining = try await pool.send(XRANGE(RedisArgument(stream)))
            #expect(remaining.first?.id == held[5].id)
        }
    }

    @Test("a cap removes no less than a trim without it: where every group is done, both remove everything")
    func capNeverKeepsWhatTheTrimRemoves() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            for (stream, count) in [("long", 30), ("short", 5)] {
                try await publish(pool, stream: stream, count: count)
                try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "done", id: "$"))
                // Before: 20 removed from the long stream (its newest 10 kept), 5 from the short one.
                let result = try await StreamRetention(client: pool).trim(stream: stream, maxLength: 10)
                #expect(result.removed == count && !result.capRefused, "\(stream): \(result)")
                #expect(try await pool.send(XLEN(RedisArgument(stream))) == 0, "\(stream)")
            }
        }
    }

    @Test("a trim keeps what its coverage record does not cover, read at trim time; no record keeps everything")
    func coverageRecordHoldsTheTrimBack() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "{t}events"
            try await publish(pool, stream: stream, count: 20)
            try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "done", id: "$"))
            let entries = try await pool.send(XRANGE(RedisArgument(stream)))
            let retention = StreamRetention(client: pool)
            let record = StreamRetention.CoverageRecord(key: "{t}snapshot", field: "position", index: 2)
            // No record yet: nothing goes, whatever the caller's floor says.
            let none = try await retention.trim(stream: stream, keepingFrom: StreamID(entries[15].id), coveredBy: record)
            #expect(none.removed == 0)
            // The record covers the first 8 entries (its second word): the caller's floor of 15 is held back to 8.
            _ = try await pool.send(RawCommand(["HSET", "{t}snapshot", "position", RedisArgument("0-1 \(entries[7].id) 0-1")], keys: ["{t}snapshot"]))
            let held = try await retention.trim(stream: stream, keepingFrom: StreamID(entries[15].id), coveredBy: record)
            #expect(held.removed == 8)
            #expect(try await pool.send(XRANGE(RedisArgument(stream))).first?.id == entries[8].id)
        }
    }

    @Test("with required groups: a stream waits for each of them; one no group reads goes to the floor")
    func requiredGroupsHoldTheTrimBack() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let retention = StreamRetention(client: pool)
            let stream = "{r}events"
            try await publish(pool, stream: stream, count: 20)
            let entries = try await pool.send(XRANGE(RedisArgument(stream)))
            let floor = StreamID(entries[12].id)
            // Without a list, as before: no groups, nothing goes.
            #expect(try await retention.trim(stream: stream, keepingFrom: floor).removed == 0)
            // No group reads it and none is required: trimmed to the floor alone.
            let unread = try await retention.trim(stream: stream, keepingFrom: floor, requiredGroups: [])
            #expect(unread.removed == 12 && unread.missingGroup == nil, "\(unread)")
            // A group that does not exist yet holds everything back, named.
            let waiting = try await retention.trim(stream: stream, requiredGroups: ["mailer", "billing"])
            #expect(waiting.removed == 0 && waiting.missingGroup == "mailer", "\(waiting)")
            // Once it exists (from the beginning, nothing read), it is the one that decides.
            try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "mailer", id: "0"))
            try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "billing", id: "$"))
            let held = try await retention.trim(stream: stream, requiredGroups: ["mailer", "billing"])
            #expect(held.removed == 0 && held.missingGroup == nil && held.groups == 2, "\(held)")
            #expect(try await pool.send(XLEN(RedisArgument(stream))) == 8)

            // A stream that does not exist has none of its required groups.
            let absent = try await retention.trim(stream: "{r}none", requiredGroups: ["mailer"])
            #expect(absent.removed == 0 && absent.missingGroup == "mailer", "\(absent)")
        }
    }

    @Test("a stream no group reads is held back by its coverage record, not only by the caller's floor")
    func aStreamNoGroupReadsKeepsWhatItsRecordDoesNotCover() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "{u}events"
            try await publish(pool, stream: stream, count: 20)
            let entries = try await pool.send(XRANGE(RedisArgument(stream)))
            let retention = StreamRetention(client: pool)
            let record = StreamRetention.CoverageRecord(key: "{u}snapshot", field: "position", index: 1)
            // The record (what survived a failover) covers 8 entries; the caller's floor says 15.
            _ = try await pool.send(RawCommand(["HSET", "{u}snapshot", "position", RedisArgument(entries[7].id)], keys: ["{u}snapshot"]))
            let held = try await retention.trim(stream: stream, keepingFrom: StreamID(entries[15].id), coveredBy: record, requiredGroups: [])
            #expect(held.removed == 8 && held.groups == 0, "\(held)")
            #expect(try await pool.send(XRANGE(RedisArgument(stream))).first?.id == entries[8].id)
        }
    }

    @Test("deleted ids reported by XAUTOCLAIM are acked and counted as lost")
    func trimmedPendingEntriesAreCounted() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "lossy"
            try await publish(pool, stream: stream, count: 20)
            try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "g", id: "0"))
            // A consumer that died holding everything, then an unsafe trim by hand.
            _ = try await pool.send(XREADGROUP(group: "g", consumer: "dead", streams: [(stream, ">")], count: 20))
            _ = try await pool.send(XTRIM(RedisArgument(stream), .maxLength(0)))
            let worker = RunningWorker(pool: pool, configuration: .init(lease: .seconds(1)), subscriptions: [Subscription(stream: stream, group: "g") { _ in .done }])
            #expect(await eventually { worker.worker.stats[.lostToTrimming] == 20 })
            #expect(try await pendingCount(pool, stream: stream, group: "g") == 0)
            try await worker.stop()
            #expect(worker.worker.stats[.processed] == 0)
        }
    }

    @Test("NOGROUP at run time: the group is recreated and the worker goes on")
    func groupDeletedWhileRunning() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{product}_created"
            let worker = RunningWorker(pool: pool, configuration: .init(block: .milliseconds(200)), subscriptions: [Subscription(stream: stream, group: "g", handler: countingHandler(effectsKey: "effects"))])
            let first = try await publish(pool, stream: stream, count: 5)
            #expect(await eventually { try await effectCounts(pool, "effects").count == 5 })
            #expect(try await pool.send(XGROUPDESTROY(RedisArgument(stream), group: "g")))
            let second = try await publish(pool, stream: stream, count: 5)
            #expect(await eventually { try await effectCounts(pool, "effects").count == 10 })
            try await worker.stop()
            #expect(worker.worker.stats[.groupsRecreated] >= 1)
            // Recreated from the beginning: the first five came again and were recognised as duplicates.
            #expect(try await effectCounts(pool, "effects") == Dictionary(uniqueKeysWithValues: (first + second).map { ($0, 1) }))
        }
    }

    @Test("a stable consumer name re-reads its own pending entries first; idle empty consumers are removed, holders are kept")
    func membership() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "m"
            let ids = try await publish(pool, stream: stream, count: 6)
            try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "g", id: "0"))
            // "stable" read 3 entries in an earlier life and died; "holder" holds 1; "idle" holds none.
            _ = try await pool.send(XREADGROUP(group: "g", consumer: "stable", streams: [(stream, ">")], count: 3))
            _ = try await pool.send(XREADGROUP(group: "g", consumer: "holder", streams: [(stream, ">")], count: 1))
            try await pool.send(["XGROUP", "CREATECONSUMER", RedisArgument(stream), "g", "idle"])
            // The group's replay stream too: a worker killed after a replay stayed listed there
            // for ever (a soak: 29 min, shown by `ordershop status`), its gauges never set.
            let replay = RedisArgument(StreamKeys.replay(stream: stream, group: "g"))
            try await pool.send(XGROUPCREATE(replay, group: "g", id: "0", makeStream: true))
            try await pool.send(["XGROUP", "CREATECONSUMER", replay, "g", "killed-after-a-replay"])
            try await Task.sleep(for: .milliseconds(300))
            let seen = Recorder<(String, Int)>()
            let worker = RunningWorker(
                pool: pool,
                // One handler at a time: entries start in the order they were read.
                configuration: .init(
                    consumerName: "stable", maxInFlight: 1, lease: .seconds(60), removeIdleConsumersAfter: .milliseconds(200),
                    inspectionInterval: .milliseconds(200)),
                subscriptions: [Subscription(stream: stream, group: "g") { d in seen.append((d.eventID, d.deliveryCount)); return .done }])
            #expect(await eventually { seen.all.count == 5 })
            #expect(await eventually { try await !pool.send(XINFOCONSUMERS(RedisArgument(stream), group: "g")).map(\.name).contains("idle") })
            #expect(await eventually { try await !pool.send(XINFOCONSUMERS(replay, group: "g")).map(\.name).contains("killed-after-a-replay") })
            try await worker.stop()
            // Its own three came first, as redeliveries.
            #expect(seen.all.prefix(3).map(\.0) == Array(ids.prefix(3)))
            #expect(seen.all.prefix(3).allSatisfy { $0.1 == 2 })
            let names = try await pool.send(XINFOCONSUMERS(RedisArgument(stream), group: "g")).map(\.name)
            #expect(names.contains("holder"), "a consumer holding entries is never removed")
            #expect(!names.contains("stable"), "left the group on shutdown: it held nothing")
        }
    }
}
