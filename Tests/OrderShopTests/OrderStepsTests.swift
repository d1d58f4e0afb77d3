import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// An order change in single-slot steps (``OrderSteps``), stopped between its steps as a
    /// process that dies there would leave it, on a real Redis: the reaper must end what it
    /// left, either way, and the late step must not undo the reaper's decision.
    @Suite struct OrderStepsTests {
        /// A customer, a product with `stock` units, and the store.
        func seed(_ pool: RedisConnectionPool, stock: Int) async throws -> (EventStore, customer: String, product: String) {
            let store = EventStore(pool: pool)
            try await store.create([Customer(id: "c1", name: "Buyer", email: "buyer@shop.test")], trace: "seed")
            try await store.create([Product(id: "p1", name: "P", price: 1)], trace: "seed")
            try await store.create([Inventory(id: "i1", productID: "p1", amount: stock)], trace: "seed")
            return (store, "c1", "p1")
        }

        func stock(_ store: EventStore) async throws -> Int? {
            try await ReadModel(pool: store.pool).lookup(Inventory.self, id: "i1")?.entity.amount
        }

        func open(_ store: EventStore) async throws -> Int {
            try await store.pool.send(ZCARD(RedisArgument(OrderStepKeys.open)))
        }

        /// What `create` reserves for an order: its rid is the order's id (`keep` with a key).
        func creation(_ order: Order, keep: Bool = false) -> OrderSteps.Reservation {
            .init(
                rid: order.id, order: order.id, action: .created, eventID: UUID().uuidString.lowercased(), trace: "t", take: order.units, give: [:],
                keep: keep)
        }

        @Test("a create that died after reserving its stock: the reaper gives the units back, and the late order is refused")
        func reservationWithoutOrderIsReleased() async throws {
            try await withRedisServer { server in
                let (store, customer, product) = try await seed(try server.makePool(), stock: 5)
                let steps = OrderSteps(store: store)
                let order = Order(id: "o1", productIDs: [product, product], customerID: customer)
                try await steps.prepare([creation(order)])
                #expect(try await stock(store) == 3)
                // Within its grace time the reservation is left alone.
                #expect(try await ReservationReaper(store: store, grace: .seconds(3600), logger: .init(label: "test")).reapOnce() == 0)
                #expect(try await stock(store) == 3)

                #expect(try await ReservationReaper(store: store, grace: .zero, logger: .init(label: "test")).reapOnce() == 1)
                #expect(try await stock(store) == 5)
                #expect(try await open(store) == 0)
                #expect(try await store.pool.send(GET(RedisArgument(OrderStepKeys.reaperAborts(in: .order)))) == Array("1".utf8), "counted as the reaper's")
                // The process comes back and makes its step 2: refused, nothing made.
                let keys = [
                    EntityType.order.keys.entities, EntityType.order.keys.versions, EntityType.order.keys.ids, EntityType.order.keys.sequence,
                    EntityType.order.stream(.created), OrderStepKeys.decision(order.id), store.idempotencyRecord(.order, nil),
                ].map { RedisArgument($0) }
                let argv: [RedisArgument] = ["1", "t", "1", "", "o1", "e1", RedisArgument(bytes: order.json), "", "0"]
                let reply = try await store.run("create orders", OrderScripts.createOrders, in: .order, keys: keys, arguments: argv)
                #expect(reply.array?.first?.string == "aborted")
                #expect(try await ReadModel(pool: store.pool).lookup(Order.self, id: "o1") == nil)
                // The units came back once, with an event that says why.
                let returns = try await store.pool.send(XRANGE(RedisArgument(EntityType.inventory.stream(.updated))))
                    .filter { $0.string("cause") == "order_aborted:o1" }
                #expect(returns.count == 1)
            }
        }

        @Test("a deletion that died after it was made: the reaper finishes it as made, and its units come back once")
        func decidedChangeIsFinished() async throws {
            try await withRedisServer { server in
                let (store, customer, product) = try await seed(try server.makePool(), stock: 5)
                let steps = OrderSteps(store: store)
                try await store.create([Order(id: "o1", productIDs: [product, product], customerID: customer)], trace: "t")
                #expect(try await stock(store) == 3)
                #expect(try await open(store) == 0)
                // Steps 1 and 2 of a deletion, then the process dies before step 3.
                let r = OrderSteps.Reservation(
                    rid: "r-del", order: "o1", action: .deleted, eventID: "e-del", trace: "t", take: [:], give: [product: 2])
                try await steps.prepare([r])
                let o = EntityType.order.keys
                let keys = [o.entities, o.versions, o.ids, o.tombstones, EntityType.order.stream(.deleted), OrderStepKeys.decision(r.rid)]
                    .map { RedisArgument($0) }
                let reply = try await store.run("delete order", OrderScripts.deleteOrder, in: .order, keys: keys, arguments: ["o1", "e-del", "1", "t", "1"])
                #expect(reply.array?.first?.string == "ok")
                #expect(try await stock(store) == 3, "not returned before step 3")

                // A reaper must not abort what was decided: it finishes it as committed.
                let reaper = ReservationReaper(store: store, grace: .zero, logger: .init(label: "test"))
                #expect(try await reaper.reapOnce() == 1)
                #expect(try await stock(store) == 5)
                // A second reaper, and the late step 3 of the dead process: nothing more.
                #expect(try await reaper.reapOnce() == 0)
                #expect(try await steps.finish([steps.reserved(r)], [.committed]) == 0)
                #expect(try await stock(store) == 5)
                #expect(try await store.pool.send(EXISTS(RedisArgument(OrderStepKeys.decision(r.rid)))) == 0, "the decision is cleaned up")
            }
        }

        @Test("an update whose order changed after its stock was reserved is retried on the new version, and takes stock only once")
        func updateRetriesOnAChangedVersion() async throws {
            try await withRedisServer { server in
                let (store, customer, product) = try await seed(try server.makePool(), stock: 5)
                try await store.create([Order(id: "o1", productIDs: [product], customerID: customer)], trace: "t")
                // A reservation for version 1 whose step 2 finds version 2: refused as "changed".
                let steps = OrderSteps(store: store)
                try await store.update(Order(id: "o1", productIDs: [product, product], customerID: customer), trace: "t")
                #expect(try await stock(store) == 3)
                let r = OrderSteps.Reservation(rid: "r-old", order: "o1", action: .updated, eventID: "e-old", trace: "t", take: [product: 2], give: [:])
                try await steps.prepare([r])
                #expect(try await stock(store) == 1)
                let keys = [
                    EntityType.order.keys.entities, EntityType.order.keys.versions, EntityType.order.stream(.updated), OrderStepKeys.decision(r.rid),
                ].map { RedisArgument($0) }
                let stale = Order(id: "o1", productIDs: [product, product, product], customerID: customer)
                let reply = try await store.run(
                    "update order", OrderScripts.updateOrder, in: .order, keys: keys, arguments: ["o1", "e-old", RedisArgument(bytes: stale.json), "1", "t", "1"])
                #expect(reply.array?.first?.string == "changed")
                #expect(try await ReservationReaper(store: store, grace: .zero, logger: .init(label: "test")).reapOnce() == 1)
                #expect(try await stock(store) == 3)
                #expect(try await ReadModel(pool: store.pool).lookup(Order.self, id: "o1")?.entity.productIDs.count == 2)
            }
        }

        @Test("a keyed create whose first attempt the reaper aborted: its retry makes the orders anew, with new ids, and takes the stock once")
        func keyedCreateAfterAnAbort() async throws {
            try await withRedisServer { server in
                let (store, customer, product) = try await seed(try server.makePool(), stock: 5)
                let steps = OrderSteps(store: store)
                let body = Array("cart-1".utf8)
                let key = try #require(EventStore.CreateKey(key: "k-1", body: body))
                // The first attempt fixes its ids and reserves, then its process dies.
                let first = Order(id: "o-first", productIDs: [product], customerID: customer)
                let claimed = try await store.pool.evaluate(
                    OrderScripts.claim, keys: [RedisArgument(key.record(in: .order))],
                    arguments: [RedisArgument(key.digest), "60000", "", "o-first"])
                #expect(claimed.array?.first?.string == "claimed")
                try await steps.prepare([creation(first, keep: true)])
                #expect(try await stock(store) == 4)
                #expect(try await ReservationReaper(store: store, grace: .zero, logger: .init(label: "test")).reapOnce() == 1)
                #expect(try await stock(store) == 5)

                // The retry with the key: o-first is aborted, so new ids.
                let retry = try await store.create([Order(id: "o-unused", productIDs: [product], customerID: customer)], trace: "t", key: key)
                let made = try #require(retry.madeIDs)
                #expect(made.count == 1 && made != ["o-first"] && made != ["o-unused"])
                #expect(try await stock(store) == 4)
                #expect(try await ReadModel(pool: store.pool).lookup(Order.self, id: made[0]) != nil)
                #expect(try await ReadModel(pool: store.pool).lookup(Order.self, id: "o-first") == nil)
                // And once more: replayed, nothing taken.
                let again = try await store.create([Order(id: "o-other", productIDs: [product], customerID: customer)], trace: "t", key: key)
                #expect(again.replayedIDs == made)
                #expect(try await stock(store) == 4)
                #expect(try await open(store) == 0)
            }
        }

        @Test("a keyed retry that read its key's pending ids before the first attempt finished reserves nothing again, and answers the ids made")
        func keyedRetryAfterTheFirstAttemptFinished() async throws {
            try await withRedisServer { server in
                let (store, customer, product) = try await seed(try server.makePool(), stock: 5)
                let steps = OrderSteps(store: store)
                let key = try #require(EventStore.CreateKey(key: "k-2", body: Array("cart-2".utf8)))
                let order = Order(id: "o-a", productIDs: [product, product], customerID: customer)
                // The first attempt: its ids fixed, reserved, made and finished.
                let claimed = try await store.pool.evaluate(
                    OrderScripts.claim, keys: [RedisArgument(key.record(in: .order))], arguments: [RedisArgument(key.digest), "60000", "", "o-a"])
                #expect(claimed.array?.first?.string == "claimed")
                try await steps.prepare([creation(order, keep: true)])
                let keys = [
                    EntityType.order.keys.entities, EntityType.order.keys.versions, EntityType.order.keys.ids, EntityType.order.keys.sequence,
                    EntityType.order.stream(.created), OrderStepKeys.decision("o-a"), key.record(in: .order),
                ].map { RedisArgument($0) }
                let argv: [RedisArgument] = ["1", "t", "1", "", "o-a", "e-a", RedisArgument(bytes: order.json)] + EventStore.CreateKey.arguments(key)
                #expect(try await store.run("create orders", OrderScripts.createOrders, in: .order, keys: keys, arguments: argv).array?.first?.string == "ok")
                #expect(try await steps.finish([steps.reserved(creation(order))], [.committed]) == 1)
                #expect(try await stock(store) == 3)
                // The retry had read "pending o-a" before all that: its step 1 takes nothing.
                try await steps.prepare([creation(order, keep: true)])
                #expect(try await stock(store) == 3)
                #expect(try await open(store) == 0)
                // Through the store, the retry answers the first attempt's id, replayed.
                let retry = try await store.create([Order(id: "o-b", productIDs: [product, product], customerID: customer)], trace: "t", key: key)
                #expect(retry.replayedIDs == ["o-a"])
                #expect(try await stock(store) == 3)
            }
        }
    }
}
