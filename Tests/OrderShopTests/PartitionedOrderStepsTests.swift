import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// Order changes in a shop in partitions (``ShopLayout``): an order whose products' stock
    /// records lie in two stock partitions reserves a part in each (``OrderSteps``). On a real
    /// Redis, each way a change can stop between its parts must end with its units either the
    /// order's in every partition or back in every partition.
    @Suite struct PartitionedOrderStepsTests {
        static let layout = ShopLayout(partitions: 4)

        /// A customer, and two products in different stock partitions with `stock` units each.
        struct Seeded {
            var store: EventStore
            var customer: String
            var products: [String]
            var stocks: [String]
        }

        /// `including`: one of the two products in that stock partition.
        func seed(_ pool: RedisConnectionPool, stock: [Int], including: Int? = nil) async throws -> Seeded {
            let store = EventStore(pool: pool, layout: Self.layout)
            let customer = try #require(try await store.create([Customer(id: "c", name: "Buyer", email: "buyer@shop.test")], trace: "seed").madeIDs?.first)
            // A product's partition is drawn at random: create until two partitions differ.
            var byPartition: [Int: String] = [:]
            while byPartition.count < 2 || including.map({ byPartition[$0] == nil }) == true {
                let id = try #require(try await store.create([Product(id: "p", name: "P", price: 1)], trace: "seed").madeIDs?.first)
                byPartition[OrderSteps.stockPartition(ofProduct: id, in: Self.layout)] = id
            }
            let chosen = Array(byPartition.keys.sorted { ($0 == including ? -1 : $0) < ($1 == including ? -1 : $1) }.prefix(2))
            let products = chosen.map { byPartition[$0]! }
            var stocks: [String] = []
            for (product, amount) in zip(products, stock) {
                let made = try await store.create([Inventory(id: "i", productID: product, amount: amount)], trace: "seed")
                stocks.append(try #require(made.madeIDs?.first))
            }
            return Seeded(store: store, customer: customer, products: products, stocks: stocks)
        }

        func stock(_ s: Seeded) async throws -> [Int?] {
            var out: [Int?] = []
            for id in s.stocks { out.append(try await ReadModel(pool: s.store.pool, layout: Self.layout).lookup(Inventory.self, id: id)?.entity.amount) }
            return out
        }

        func open(_ s: Seeded) async throws -> Int {
            var n = 0
            for p in Self.layout.partitions(.inventory) { n += try await s.store.pool.send(ZCARD(RedisArgument(OrderStepKeys.open(in: p)))) }
            return n
        }

        /// Step 1 of creating an order of `units` of each product, in order partition `p`, by a
        /// process that then stops: the order it was making.
        func reserveOnly(_ s: Seeded, units: [Int], inPartition p: Int) async throws -> Order {
            let id = Self.layout.newID(of: .order, inPartition: p)
            let order = Order(id: id, productIDs: zip(s.products, units).flatMap { Array(repeating: $0.0, count: $0.1) }, customerID: s.customer)
            try await OrderSteps(store: s.store).prepare([.init(rid: id, order: id, action: .created, eventID: "e", trace: "t", take: order.units, give: [:])])
            return order
        }

        /// Step 2 of creating `order` (its id is its rid), as a process that made step 1 runs it:
        /// the script's answer.
        func stepTwo(_ order: Order, _ s: Seeded) async throws -> String? {
            let partition = Self.layout.partition(.order, id: order.id)
            let k = partition.keys
            let keys = [
                k.entities, k.versions, k.ids, k.sequence, partition.stream(.created), OrderStepKeys.decision(order.id, in: Self.layout),
                k.idempotencyPlaceholder,
            ].map { RedisArgument($0) }
            let argv: [RedisArgument] = ["1", "t", "1", "1", RedisArgument(order.id), "e", RedisArgument(bytes: order.json), "", "0"]
            return try await s.store.run("create orders", OrderScripts.createOrders, in: partition, keys: keys, arguments: argv).array?.first?.string
        }

        @Test("an order of products in two stock partitions takes its units in both, and a deletion gives them back in both")
        func orderOverTwoStockPartitions() async throws {
            try await withRedisServer { server in
                let s = try await seed(try server.makePool(), stock: [5, 5])
                #expect(OrderSteps.Reservation(rid: "r", order: "o", action: .created, eventID: "e", trace: "t", take: [s.products[0]: 1, s.products[1]: 1], give: [:]).parts(in: Self.layout).count == 2)
                let made = try await s.store.create([Order(id: "o", productIDs: [s.products[0], s.products[1], s.products[1]], customerID: s.customer)], trace: "t")
                let id = try #require(made.madeIDs?.first)
                #expect(try await stock(s) == [4, 3])
                #expect(try await open(s) == 0)
                try await s.store.delete(.order, id: id, trace: "t")
                #expect(try await stock(s) == [5, 5])
                #expect(try await open(s) == 0)
                // A stock record stays in its product's partition.
                let moved = await #expect(throws: ShopError.self) {
                    try await s.store.update(Inventory(id: s.stocks[0], productID: s.products[1], amount: 1), trace: "t")
                }
                #expect(moved?.status == 400 && moved?.message.hasPrefix("a stock record stays in the partition of the product") == true, "\(String(describing: moved))")
            }
        }

        @Test("an order refused for stock in its second stock partition leaves nothing taken in the first, and nothing open")
        func refusalInALaterPartitionReturnsTheEarlierPart() async throws {
            try await withRedisServer { server in
                let s = try await seed(try server.makePool(), stock: [5, 1])
                let order = Order(id: "o", productIDs: [s.products[0], s.products[1], s.products[1]], customerID: s.customer)
                await #expect(throws: ShopError.self) { try await s.store.create([order], trace: "t") }
                #expect(try await stock(s) == [5, 1])
                #expect(try await open(s) == 0, "the first partition's part is ended at once, not left to the reaper")
                #expect(try await ReadModel(pool: s.store.pool, layout: Self.layout).count(.order) == 0)
            }
        }

        @Test("a keyed create refused in its second stock partition, retried with its key once stock came: one order, its units taken once")
        func keyedRefusalThenRetry() async throws {
            try await withRedisServer { server in
                let s = try await seed(try server.makePool(), stock: [5, 0])
                let key = try #require(EventStore.CreateKey(key: "k-retry", body: Array("cart".utf8)))
                let order = Order(id: "o", productIDs: [s.products[0], s.products[1]], customerID: s.customer)
                await #expect(throws: ShopError.self) { try await s.store.create([order], trace: "t", key: key) }
                #expect(try await stock(s) == [5, 0])
                #expect(try await open(s) == 0)
                for p in Self.layout.partitions(.order) {
                    #expect(try await s.store.pool.send(EXISTS(RedisArgument(OrderStepKeys.reaperAborts(in: p)))) == 0, "aborted by the request, not a reaper")
                }
                try await s.store.update(Inventory(id: s.stocks[1], productID: s.products[1], amount: 3), trace: "t")
                let made = try await s.store.create([order], trace: "t", key: key)
                let id = try #require(made.madeIDs?.first)
                #expect(try await stock(s) == [4, 2])
                #expect(try await s.store.create([order], trace: "t", key: key).replayedIDs == [id])
                #expect(try await stock(s) == [4, 2])
                #expect(try await ReadModel(pool: s.store.pool, layout: Self.layout).count(.order) == 1)
                #expect(try await open(s) == 0)
            }
        }

        @Test("a create that died after reserving in two stock partitions: the reaper returns both parts, and the late order is refused")
        func reaperEndsEveryPartOfAnAbandonedCreate() async throws {
            try await withRedisServer { server in
                let s = try await seed(try server.makePool(), stock: [5, 5])
                let order = try await reserveOnly(s, units: [2, 1], inPartition: 1)
                #expect(try await stock(s) == [3, 4])
                #expect(try await ReservationReaper(store: s.store, grace: .zero, logger: .init(label: "test")).reapOnce() == 1)
                #expect(try await stock(s) == [5, 5])
                #expect(try await open(s) == 0)
                // The dead process's step 2 comes late: the decision is aborted, nothing made.
                #expect(try await stepTwo(order, s) == "aborted")
            }
        }

        @Test("a create that died after its order was made: the reaper keeps both parts' units taken, found from either partition")
        func reaperCommitsEveryPartOfAMadeCreate() async throws {
            try await withRedisServer { server in
                let s = try await seed(try server.makePool(), stock: [5, 5])
                let order = try await reserveOnly(s, units: [1, 2], inPartition: 2)
                #expect(try await stepTwo(order, s) == "ok")
                // The process dies before step 3. The pass over the first stock partition finds
                // one part and ends both by the committed decision (each part records where the
                // others are). Ending only the part it found, it would delete the decision with the
                // other part open, and the pass over that partition would abort it and return units
                // the order holds.
                #expect(try await ReservationReaper(store: s.store, grace: .zero, logger: .init(label: "test")).reapOnce() == 1)
                #expect(try await stock(s) == [4, 3])
                #expect(try await open(s) == 0)
                #expect(try await s.store.pool.send(EXISTS(RedisArgument(OrderStepKeys.decision(order.id, in: Self.layout)))) == 0, "the decision is cleaned up")
                #expect(try await ReservationReaper(store: s.store, grace: .zero, logger: .init(label: "test")).reapOnce() == 0)
                #expect(try await stock(s) == [4, 3])
            }
        }

        @Test("a stock partition that cannot be reached (its primary failing over) holds up the reaping of no other")
        func reaperGoesOnPastAFailingPartition() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let s = try await seed(pool, stock: [5, 5], including: 0)
                let other = OrderSteps.stockPartition(ofProduct: s.products[1], in: Self.layout)
                _ = try await reserveOnly(s, units: [1, 0], inPartition: 0)
                _ = try await reserveOnly(s, units: [0, 1], inPartition: other)
                #expect(try await stock(s) == [4, 4])
                // A reaper whose Redis user reaches every partition's keys but partition 0's.
                let restricted = try await server.makeUserPool("reaper", rules: ["+@all", "~*:1{*", "~*:2{*", "~*:3{*"], admin: pool)
                let reaper = ReservationReaper(store: EventStore(pool: restricted, layout: Self.layout), grace: .zero, logger: .init(label: "test"))
                await #expect(throws: RedisError.self) { try await reaper.reapOnce() }
                #expect(try await stock(s) == [4, 5], "partition \(other)'s reservation is ended though partition 0 failed first")
                #expect(try await open(s) == 1)
                await restricted.shutdown()
            }
        }

        @Test("orders, their unbilled list and their stock in partitions: lists in creation order across partitions")
        func ordersListedInCreationOrder() async throws {
            try await withRedisServer { server in
                let s = try await seed(try server.makePool(), stock: [100, 100])
                var ids: [String] = []
                for i in 0..<12 {
                    let made = try await s.store.create([Order(id: "o", productIDs: [s.products[i % 2]], customerID: s.customer)], trace: "t")
                    ids.append(try #require(made.madeIDs?.first))
                }
                #expect(Set(ids.map { Self.layout.partition(of: .order, id: $0) }).count > 1, "12 orders in one partition of 4: the ids are not spread")
                try await s.store.create([Billing(id: "b", orderID: ids[3], done: 1)], trace: "t")
                let model = ReadModel(pool: s.store.pool, layout: Self.layout)
                let listed = try JSONValue.parse(try await model.list(.order)).arrayValue?.compactMap { $0["id"]?.stringValue }
                #expect(listed == ids)
                let unbilled = try JSONValue.parse(try await model.unbilledOrders()).arrayValue?.compactMap { $0["id"]?.stringValue }
                #expect(unbilled == ids.enumerated().filter { $0.offset != 3 }.map(\.element))
                #expect(try await stock(s) == [94, 94])
            }
        }
    }
}
