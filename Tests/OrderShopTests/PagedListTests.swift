import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// Lists are read in pages, each a short script, so that Redis serves other commands between
    /// them: as one script a list held Redis's thread for all of it (trial K: `GET /orders`
    /// 150-162 ms at 60,000 orders, `/orders/unbilled` 667 ms at 28,000).
    @Suite struct PagedListTests {
        /// The ids of a JSON array of entities, in its order.
        func ids(_ json: [UInt8]) throws -> [String] {
            try (JSONParser.parse(json).arrayValue ?? []).map { try #require($0["id"]?.stringValue) }
        }

        func scriptCalls(_ pool: RedisConnectionPool) async throws -> Int {
            let info = try await pool.send(RawCommand(["INFO", "commandstats"], keys: [])).string ?? ""
            return info.split(whereSeparator: \.isNewline).reduce(0) { total, line in
                guard line.hasPrefix("cmdstat_evalsha:") || line.hasPrefix("cmdstat_eval:"),
                    let calls = line.split(separator: ",").first?.split(separator: "=").last.flatMap({ Int($0) })
                else { return total }
                return total + calls
            }
        }

        /// In a shop of several partitions the creation numbers come from a counter a failover
        /// can set back (``CreationSequence``): numbers handed out again must not give two
        /// entities of one partition one score, since a list pages by score and would lose the
        /// second at a page's end. Here the counter is set back by hand between two batches of
        /// 600 in one partition: every one is listed once, each batch in its order
        /// (the second's entities beside the first's of the same numbers), before and after a
        /// rebuild.
        @Test func creationNumbersHandedOutAgainLoseNoEntityFromAList() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let layout = ShopLayout(partitions: 2)
                let store = EventStore(pool: pool, layout: layout)
                func batch(_ tag: String) -> [Customer] { (0..<600).map { Customer(id: "x", name: "\(tag)\($0)", email: "\(tag)\($0)@shop.test") } }
                func key(_ text: String) -> EventStore.CreateKey { EventStore.CreateKey(key: text, body: Array(text.utf8))! }
                // Three keys of one partition: every create goes there. One customer first, so
                // that a page's end falls between two entities of one number (500 = 1 + 249 pairs + 1).
                let keys = (0...200).map { key("k\($0)") }
                let partition = layout.partition(of: .customer, id: keys[0].key)
                let same = keys.filter { layout.partition(of: .customer, id: $0.key) == partition }
                try #require(same.count >= 3)
                let lone = try #require(try await store.create([Customer(id: "x", name: "L", email: "l@shop.test")], trace: "", key: same[0]).madeIDs)
                let a = try #require(try await store.create(batch("a"), trace: "", key: same[1]).madeIDs)
                let counter = RedisArgument(CreationSequence.counter(.customer))
                _ = try await pool.send(RawCommand(["SET", counter, "1"], keys: [counter]))
                let b = try #require(try await store.create(batch("b"), trace: "", key: same[2]).madeIDs)
                let readModel = ReadModel(pool: pool, layout: layout)
                func expectEveryOneOnce() async throws {
                    let listed = try ids(try await readModel.list(.customer))
                    #expect(listed.count == 1_201)
                    #expect(listed.first == lone.first)
                    #expect(listed.filter(Set(a).contains) == a)
                    #expect(listed.filter(Set(b).contains) == b)
                }
                try await expectEveryOneOnce()
                _ = try await store.rebuild(layout.partition(.customer, partition))
                try await expectEveryOneOnce()
                await pool.shutdown()
            }
        }

        @Test func aListLongerThanAPageHasEveryLiveEntityOnceInCreationOrder() async throws {
            #expect(ReadModel.pageSize == 500)
            try await withRedisServer { server in
                let pool = try server.makePool()
                let store = EventStore(pool: pool)
                let all = (0..<1_234).map { String(format: "c%04d", $0) }
                for batch in stride(from: 0, to: all.count, by: 300) {
                    let customers = all[batch..<min(batch + 300, all.count)].map { Customer(id: $0, name: "N", email: "\($0)@shop.test") }
                    try await store.create(Array(customers), trace: "")
                }
                // Gone at a page's first and last place and in between.
                let deleted: Set<String> = ["c0000", "c0499", "c0500", "c0999", "c1000", "c1233"]
                for id in deleted.sorted() { try await store.delete(.customer, id: id, trace: "") }

                // Once before counting: the first call of a script that Redis does not hold yet
                // is an EVALSHA refused (NOSCRIPT), then an EVAL.
                _ = try await ReadModel(pool: pool).list(.customer)
                let before = try await scriptCalls(pool)
                let listed = try ids(try await ReadModel(pool: pool).list(.customer))
                #expect(listed == all.filter { !deleted.contains($0) })
                // Three pages of 500 for 1,228 entities, each its own script.
                #expect(try await scriptCalls(pool) - before == 3)
                await pool.shutdown()
            }
        }

        @Test func unbilledOrdersOverSeveralPagesLeaveOutEveryBilledOne() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let store = EventStore(pool: pool)
                try await store.create([Customer(id: "c1", name: "C", email: "c@shop.test")], trace: "")
                try await store.create([Product(id: "p1", name: "P", price: 1)], trace: "")
                try await store.create([Inventory(id: "i1", productID: "p1", amount: 10_000)], trace: "")
                let orders = (0..<1_100).map { String(format: "o%04d", $0) }
                for batch in stride(from: 0, to: orders.count, by: 275) {
                    try await store.create(orders[batch..<min(batch + 275, orders.count)].map { Order(id: $0, productIDs: ["p1"], customerID: "c1") }, trace: "")
                }
                // Billed: every third order, and a page's first and last.
                let billed = Set(orders.enumerated().filter { $0.offset % 3 == 0 || [499, 500, 999].contains($0.offset) }.map(\.element))
                try await store.create(billed.sorted().map { Billing(id: "b-" + $0, orderID: $0, done: 1) }, trace: "")
                let unbilled = try ids(try await ReadModel(pool: pool).unbilledOrders())
                #expect(unbilled == orders.filter { !billed.contains($0) })
                await pool.shutdown()
            }
        }

        /// A rebuild's swap between two pages renumbers the creation order the pages follow
        /// (here: scores the commands gave from 10,001, the rebuild from 1): the list starts
        /// again instead of ending after the first page with 500 of 1,200.
        @Test func aRebuildBetweenTwoPagesStartsTheListAgain() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let store = EventStore(pool: pool)
                let all = (0..<1_200).map { String(format: "c%04d", $0) }
                _ = try await pool.send(RawCommand(["SET", RedisArgument(EntityType.customer.keys.sequence), "10000"], keys: [RedisArgument(EntityType.customer.keys.sequence)]))
                for batch in stride(from: 0, to: all.count, by: 300) {
                    try await store.create(all[batch..<min(batch + 300, all.count)].map { Customer(id: $0, name: "N", email: "\($0)@shop.test") }, trace: "")
                }
                var listed: [String] = []
                var starts = 0
                var rebuilt = false
                try await ReadModel(pool: pool).pages(of: ShopLayout.single.partition(.customer, 0), start: { listed = []; starts += 1 }) { page in
                    listed += page.map(\.id)
                    if !rebuilt {
                        rebuilt = true
                        let report = try await store.rebuild(.customer)
                        #expect(report.live == 1_200)
                    }
                }
                #expect(starts == 2)
                #expect(listed == all)
                await pool.shutdown()
            }
        }
    }
}
