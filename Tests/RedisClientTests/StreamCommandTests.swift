import RedisClient
import TestSupport
import Testing

/// Every typed stream command against a real redis-server.
@Suite struct StreamCommandTests {
    /// Adds `count` entries `n=0...` and returns their ids.
    private func add(_ connection: RedisConnection, _ key: String, count: Int, from start: Int = 0) async throws -> [String] {
        var ids: [String] = []
        for i in start..<(start + count) {
            ids.append(try #require(try await connection.send(XADD(RedisArgument(key), fields: [StreamField("n", "\(i)")]))))
        }
        return ids
    }

    private func pendingDetail(_ connection: RedisConnection, _ key: String, group: String = "g") async throws -> [String: XPENDINGDetail.Entry] {
        let entries = try await connection.send(XPENDINGDetail(RedisArgument(key), group: group, count: 1000))
        return Dictionary(uniqueKeysWithValues: entries.map { ($0.id, $0) })
    }

    @Test func xaddMakesIDsAndTrims() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            // Auto ids come from Redis and increase.
            let ids = try await add(c, "auto", count: 3)
            let parsed = ids.compactMap(StreamID.init)
            #expect(parsed.count == 3)
            #expect(parsed == parsed.sorted() && Set(parsed).count == 3)

            // MAXLEN keeps the newest entries.
            for i in 0..<5 {
                _ = try await c.send(XADD("capped", fields: [StreamField("n", "\(i)")], trim: .maxLength(3)))
            }
            #expect(try await c.send(XLEN("capped")) == 3)
            #expect(try await c.send(XRANGE("capped")).map { $0.string("n") } == ["2", "3", "4"])

            // MINID drops entries below the id.
            for id in ["1-1", "2-1", "3-1"] {
                #expect(try await c.send(XADD("byid", id: id, fields: [StreamField("f", "v")])) == id)
            }
            #expect(try await c.send(XADD("byid", id: "4-1", fields: [StreamField("f", "v")], trim: .minID(StreamID("3-1")!))) == "4-1")
            #expect(try await c.send(XRANGE("byid")).map(\.id) == ["3-1", "4-1"])

            // An id not above the top is refused.
            let error = await #expect(throws: RedisError.self) {
                try await c.send(XADD("byid", id: "2-1", fields: [StreamField("f", "v")]))
            }
            #expect(error?.code == .err)

            // NOMKSTREAM: no stream, no entry, nil id.
            #expect(try await c.send(XADD("absent", fields: [StreamField("f", "v")], noMakeStream: true)) == nil)
            #expect(try await c.send(EXISTS("absent")) == 0)

            // Approximate trimming with LIMIT is accepted by the server.
            _ = try await c.send(XADD("auto", fields: [StreamField("f", "v")], trim: .maxLength(1, approximate: true, limit: 10)))
            #expect(try await c.send(XLEN("auto")) >= 1)
        }
    }

    @Test func xreadgroupCountBlockAndSeveralStreams() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            _ = try await c.send(XGROUPCREATE("orders", group: "g", id: "0"))
            let ids = try await add(c, "orders", count: 5)

            let first = try await c.send(XREADGROUP(group: "g", consumer: "c1", streams: [("orders", ">")], count: 2))
            #expect(first.count == 1)
            #expect(first.first?.stream == "orders")
            #expect(first.first?.entries.map(\.id) == Array(ids.prefix(2)))
            #expect(first.first?.entries.first?.string("n") == "0")

            let rest = try await c.send(XREADGROUP(group: "g", consumer: "c1", streams: [("orders", ">")], count: 10))
            #expect(rest.first?.entries.map(\.id) == Array(ids.suffix(3)))

            // Nothing new: BLOCK ends with an empty result, not an error.
            let none = try await c.send(
                XREADGROUP(group: "g", consumer: "c1", streams: [("orders", ">")], count: 10, block: .milliseconds(100)))
            #expect(none.isEmpty)

            // Id 0 re-reads this consumer's own pending entries.
            let own = try await c.send(XREADGROUP(group: "g", consumer: "c1", streams: [("orders", "0")]))
            #expect(own.first?.entries.map(\.id) == ids)

            // Several streams in one call.
            _ = try await c.send(XGROUPCREATE("payments", group: "g", id: "0"))
            let payments = try await add(c, "payments", count: 2)
            let newOrder = try await add(c, "orders", count: 1, from: 5)
            let both = try await c.send(
                XREADGROUP(group: "g", consumer: "c2", streams: [("orders", ">"), ("payments", ">")], count: 10))
            let byStream = Dictionary(uniqueKeysWithValues: both.map { ($0.stream, $0.entries.map(\.id)) })
            #expect(byStream == ["orders": newOrder, "payments": payments])

            // A blocking read wakes up when an entry arrives from another connection.
            let producer = try server.makeConnection()
            let woken = Task {
                try await c.send(XREADGROUP(group: "g", consumer: "c3", streams: [("payments", ">")], count: 1, block: .seconds(60)))
            }
            #expect(await eventually { try await producer.blockedClients() == 1 })
            let late = try await add(producer, "payments", count: 1, from: 10)
            #expect(try await woken.value.first?.entries.map(\.id) == late)
        }
    }

    @Test func noGroupError() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            _ = try await add(c, "orders", count: 1)
            let missingGroup = await #expect(throws: RedisError.self) {
                try await c.send(XREADGROUP(group: "nope", consumer: "c", streams: [("orders", ">")]))
            }
            #expect(missingGroup?.code == .noGroup)
            let missingStream = await #expect(throws: RedisError.self) {
                try await c.send(XREADGROUP(group: "g", consumer: "c", streams: [("no-stream", ">")], block: .milliseconds(10)))
            }
            #expect(missingStream?.code == .noGroup)
        }
    }

    @Test func xpendingSummaryAndDetailAndXack() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            _ = try await c.send(XGROUPCREATE("s", group: "g", id: "0"))
            let ids = try await add(c, "s", count: 3)
            _ = try await c.send(XREADGROUP(group: "g", consumer: "c1", streams: [("s", ">")], count: 2))
            _ = try await c.send(XREADGROUP(group: "g", consumer: "c2", streams: [("s", ">")], count: 1))

            let summary = try await c.send(XPENDING("s", group: "g"))
            #expect(summary.count == 3)
            #expect(summary.smallestID == ids[0])
            #expect(summary.largestID == ids[2])
            #expect(summary.consumers == ["c1": 2, "c2": 1])

            let detail = try await c.send(XPENDINGDetail("s", group: "g", count: 10))
            #expect(detail.map(\.id) == ids)
            #expect(detail.map(\.consumer) == ["c1", "c1", "c2"])
            #expect(detail.allSatisfy { $0.deliveryCount == 1 && $0.idleMilliseconds >= 0 })

            #expect(try await c.send(XPENDINGDetail("s", group: "g", count: 10, consumer: "c2")).map(\.id) == [ids[2]])
            #expect(try await c.send(XPENDINGDetail("s", group: "g", start: ids[1], count: 10)).map(\.id) == Array(ids[1...]))
            #expect(try await c.send(XPENDINGDetail("s", group: "g", count: 1)).count == 1)
            // Nothing has been idle for an hour.
            #expect(try await c.send(XPENDINGDetail("s", group: "g", minIdle: .seconds(3600), count: 10)).isEmpty)

            // XACK many ids at once; an id that is not pending does not count.
            #expect(try await c.send(XACK("s", group: "g", ids: ids + ["999999-0"])) == 3)
            let after = try await c.send(XPENDING("s", group: "g"))
            #expect(after.count == 0)
            #expect(after.smallestID == nil)
            #expect(after.consumers.isEmpty)
            #expect(try await c.send(XACK("s", group: "g", ids: ids)) == 0)
        }
    }

    @Test func xautoclaimFollowsTheCursorAndReportsDeletedIDs() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            _ = try await c.send(XGROUPCREATE("s", group: "g", id: "0"))
            let ids = try await add(c, "s", count: 5)
            _ = try await c.send(XREADGROUP(group: "g", consumer: "dead-worker", streams: [("s", ">")]))

            // COUNT 2 over 5 pending entries: the cursor must be followed to get them all.
            var cursor = "0-0"
            var claimed: [String] = []
            var calls = 0
            repeat {
                let page = try await c.send(XAUTOCLAIM("s", group: "g", consumer: "rescuer", minIdle: .zero, start: cursor, count: 2))
                #expect(page.entries.count <= 2)
                #expect(page.entries.allSatisfy { $0.string("n") != nil })
                claimed += page.entries.map(\.id)
                cursor = page.nextCursor
                calls += 1
            } while cursor != "0-0" && calls < 20
            #expect(claimed == ids)
            #expect(calls >= 3)
            let detail = try await pendingDetail(c, "s")
            #expect(detail.values.allSatisfy { $0.consumer == "rescuer" && $0.deliveryCount == 2 })

            // Entries trimmed away while pending: Redis 7 reports their ids and drops them from the PEL.
            #expect(try await c.send(XTRIM("s", .maxLength(2))) == 3)
            let page = try await c.send(XAUTOCLAIM("s", group: "g", consumer: "third", minIdle: .zero))
            #expect(page.deletedIDs == Array(ids.prefix(3)))
            #expect(page.entries.map(\.id) == Array(ids.suffix(2)))
            #expect(page.nextCursor == "0-0")
            let summary = try await c.send(XPENDING("s", group: "g"))
            #expect(summary.count == 2)
            #expect(summary.consumers == ["third": 2])

            // An idle threshold nothing meets claims nothing.
            let none = try await c.send(XAUTOCLAIM("s", group: "g", consumer: "fourth", minIdle: .seconds(3600)))
            #expect(none.entries.isEmpty && none.deletedIDs.isEmpty)
        }
    }

    @Test func xclaimJustIDKeepsTheDeliveryCount() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            _ = try await c.send(XGROUPCREATE("s", group: "g", id: "0"))
            let ids = try await add(c, "s", count: 2)
            _ = try await c.send(XREADGROUP(group: "g", consumer: "c1", streams: [("s", ">")]))

            let justIDs = try await c.send(XCLAIM("s", group: "g", consumer: "c2", ids: [ids[0]], justID: true))
            #expect(justIDs == [StreamEntry(id: ids[0], fields: [])])
            var detail = try await pendingDetail(c, "s")
            #expect(detail[ids[0]]?.consumer == "c2")
            #expect(detail[ids[0]]?.deliveryCount == 1)

            // A plain XCLAIM returns the entry and counts a delivery.
            let full = try await c.send(XCLAIM("s", group: "g", consumer: "c3", ids: [ids[1]]))
            #expect(full.map(\.id) == [ids[1]])
            #expect(full.first?.string("n") == "1")
            detail = try await pendingDetail(c, "s")
            #expect(detail[ids[1]]?.consumer == "c3")
            #expect(detail[ids[1]]?.deliveryCount == 2)

            // Not idle long enough: nothing is claimed.
            #expect(try await c.send(XCLAIM("s", group: "g", consumer: "c4", minIdle: .seconds(3600), ids: ids, justID: true)).isEmpty)

            // IDLE and RETRYCOUNT set the entry's state explicitly.
            _ = try await c.send(XCLAIM("s", group: "g", consumer: "c2", ids: [ids[1]], idle: .seconds(120), retryCount: 7, justID: true))
            detail = try await pendingDetail(c, "s")
            #expect(detail[ids[1]]?.deliveryCount == 7)
            #expect((detail[ids[1]]?.idleMilliseconds ?? 0) >= 120_000)
            #expect(detail[ids[1]]?.consumer == "c2")
        }
    }

    @Test func xgroupCreateBusyDelConsumerSetIDDestroy() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            // MKSTREAM makes the empty stream.
            _ = try await c.send(XGROUPCREATE("s", group: "g", id: "$", makeStream: true))
            #expect(try await c.send(EXISTS("s")) == 1)
            #expect(try await c.send(XLEN("s")) == 0)

            let busy = await #expect(throws: RedisError.self) { try await c.send(XGROUPCREATE("s", group: "g")) }
            #expect(busy?.code == .busyGroup)
            let noStream = await #expect(throws: RedisError.self) {
                try await c.send(XGROUPCREATE("absent", group: "g", makeStream: false))
            }
            #expect(noStream?.code == .err)

            let ids = try await add(c, "s", count: 3)
            _ = try await c.send(XREADGROUP(group: "g", consumer: "leaver", streams: [("s", ">")], count: 2))
            _ = try await c.send(XREADGROUP(group: "g", consumer: "stayer", streams: [("s", ">")], count: 1))
            // DELCONSUMER answers how many pending entries the consumer had (and drops them).
            #expect(try await c.send(XGROUPDELCONSUMER("s", group: "g", consumer: "leaver")) == 2)
            #expect(try await c.send(XINFOCONSUMERS("s", group: "g")).map(\.name) == ["stayer"])
            #expect(try await c.send(XPENDING("s", group: "g")).count == 1)

            // SETID rewinds the group: everything is new again.
            _ = try await c.send(XGROUPSETID("s", group: "g", id: "0"))
            let again = try await c.send(XREADGROUP(group: "g", consumer: "stayer", streams: [("s", ">")]))
            #expect(again.first?.entries.map(\.id) == ids)
            // With ENTRIESREAD the group's lag is known again after the jump (all three to read).
            _ = try await c.send(XGROUPSETID("s", group: "g", id: "0", entriesRead: 0))
            #expect(try await c.send(XINFOGROUPS("s")).first?.lag == 3)

            #expect(try await c.send(XGROUPDESTROY("s", group: "g")) == true)
            #expect(try await c.send(XGROUPDESTROY("s", group: "g")) == false)
            #expect(try await c.send(XINFOGROUPS("s")).isEmpty)
            let gone = await #expect(throws: RedisError.self) {
                try await c.send(XREADGROUP(group: "g", consumer: "stayer", streams: [("s", ">")]))
            }
            #expect(gone?.code == .noGroup)
        }
    }

    @Test func xinfoStreamGroupsConsumers() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            let ids = try await add(c, "s", count: 3)
            _ = try await c.send(XGROUPCREATE("s", group: "g", id: "0"))

            var stream = try await c.send(XINFOSTREAM("s"))
            #expect(stream.length == 3)
            #expect(stream.groups == 1)
            #expect(stream.firstEntryID == ids[0])
            #expect(stream.lastEntryID == ids[2])
            #expect(stream.lastGeneratedID == ids[2])
            #expect(stream.entriesAdded == 3)

            var groups = try await c.send(XINFOGROUPS("s"))
            #expect(groups.count == 1)
            #expect(groups.first?.name == "g")
            #expect(groups.first?.lag == 3)
            #expect(groups.first?.pending == 0)
            #expect(groups.first?.lastDeliveredID == "0-0")

            _ = try await c.send(XREADGROUP(group: "g", consumer: "c1", streams: [("s", ">")], count: 1))
            groups = try await c.send(XINFOGROUPS("s"))
            #expect(groups.first?.consumers == 1)
            #expect(groups.first?.pending == 1)
            #expect(groups.first?.lastDeliveredID == ids[0])
            #expect(groups.first?.entriesRead == 1)
            #expect(groups.first?.lag == 2)

            // A deletion among the undelivered entries: Redis can no longer tell the lag.
            #expect(try await c.send(XDEL("s", ids: [ids[1]])) == 1)
            groups = try await c.send(XINFOGROUPS("s"))
            #expect(groups.first?.lag == nil)
            stream = try await c.send(XINFOSTREAM("s"))
            #expect(stream.length == 2)
            #expect(stream.maxDeletedEntryID == ids[1])

            let consumers = try await c.send(XINFOCONSUMERS("s", group: "g"))
            #expect(consumers.map(\.name) == ["c1"])
            #expect(consumers.first?.pending == 1)
            #expect((consumers.first?.idleMilliseconds ?? -1) >= 0)

            let missing = await #expect(throws: RedisError.self) { try await c.send(XINFOSTREAM("absent")) }
            #expect(missing?.code == .err)
        }
    }

    @Test func xrangeXrevrangeXtrimXlenXdel() async throws {
        try await withRedisServer { server in
            let c = try server.makeConnection()
            let ids = try await add(c, "s", count: 5)
            #expect(try await c.send(XRANGE("s")).map(\.id) == ids)
            #expect(try await c.send(XRANGE("s", start: ids[1], end: ids[3])).map(\.id) == Array(ids[1...3]))
            #expect(try await c.send(XRANGE("s", count: 2)).map(\.id) == Array(ids.prefix(2)))
            // Exclusive start: the way to page through a stream.
            #expect(try await c.send(XRANGE("s", start: "(" + ids[3])).map(\.id) == [ids[4]])
            #expect(try await c.send(XRANGE("s", reverse: true)).map(\.id) == ids.reversed())
            #expect(try await c.send(XRANGE("s", start: ids[1], end: ids[3], count: 2, reverse: true)).map(\.id) == [ids[3], ids[2]])
            #expect(try await c.send(XRANGE("absent")).isEmpty)

            #expect(try await c.send(XLEN("s")) == 5)
            #expect(try await c.send(XDEL("s", ids: [ids[0], ids[2], "1-1"])) == 2)
            #expect(try await c.send(XLEN("s")) == 3)
            #expect(try await c.send(XRANGE("s")).map(\.id) == [ids[1], ids[3], ids[4]])

            #expect(try await c.send(XTRIM("s", .maxLength(1))) == 2)
            #expect(try await c.send(XRANGE("s")).map(\.id) == [ids[4]])
            _ = try await add(c, "s", count: 2, from: 5)
            #expect(try await c.send(XTRIM("s", .minID(StreamID(ids[4])!))) == 0)
            #expect(try await c.send(XTRIM("s", .minID(StreamID(milliseconds: UInt64.max, sequence: 0)))) == 3)
            #expect(try await c.send(XLEN("s")) == 0)
            #expect(try await c.send(XLEN("absent")) == 0)
        }
    }
}
