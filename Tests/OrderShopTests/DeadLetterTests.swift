import Foundation
@testable import OrderShop
import RedisClient
import StreamWorker
import TestSupport
import Testing

extension ShopIntegration {
    /// Events the workers can never handle go to the dead letters with their reason (malformed
    /// ones at once, a missing reference after its retries), and the workers go on with the rest
    /// (no crash loop, no retry storm).
    @Suite struct DeadLetterTests {
        @Test func unhandleableEventsAreDeadLetteredWithTheirReason() async throws {
            try await withShop { shop in
                let orders = EntityType.order.stream(.created)
                // An order of a customer Redis has never seen (e.g. written by a broken producer).
                _ = try await shop.pool.send(
                    XADD(
                        RedisArgument(orders),
                        fields: [
                            StreamField("event_id", UUID().uuidString), StreamField("entity", #"{"id":"o-x","product_ids":["p"],"customer_id":"ghost"}"#),
                        ]))
                // Not JSON at all.
                _ = try await shop.pool.send(
                    XADD(RedisArgument(EntityType.customer.stream(.created)), fields: [StreamField("event_id", UUID().uuidString), StreamField("entity", "{oops")]))
                // And a good customer after them, which must still get its mail.
                let id = try #require(try await shop.gateway.post("/customer", ["name": "Good", "email": "good@shop.test"]).ids.first)
                _ = id

                let crmOrders = DeadLetters(client: shop.pool, stream: orders, group: "crm")
                let billingOrders = DeadLetters(client: shop.pool, stream: orders, group: "billing")
                let crmCustomers = DeadLetters(client: shop.pool, stream: EntityType.customer.stream(.created), group: "crm")
                #expect(await eventually { (try? await crmOrders.list().count) == 1 })
                #expect(await eventually { (try? await billingOrders.list().count) == 1 })
                #expect(await eventually { (try? await crmCustomers.list().count) == 1 })
                let letter = try #require(try await crmOrders.list().first)
                #expect((letter.reason + " " + letter.error).contains("customer ghost, which does not exist"), "\(letter)")
                // A missing reference: after every delivery (the customer may only not be visible yet).
                #expect(letter.deliveryCount == WorkerConfiguration().maxDeliveries, "\(letter)")
                #expect(try await crmCustomers.list().first?.deliveryCount == 1)  // malformed: at once, not after retries
                // `dlq list` shows why beside the reason ("failed 5 deliveries").
                let listed = try await runChild(try builtProduct("ordershop"), ["dlq", "list", orders, "crm", "--url", shop.redis.url])
                let row = listed.output.split(separator: "\n").first { $0.contains(letter.id) }
                #expect(row?.contains("customer ghost, which does not exist") == true, "\(listed.output)")
                #expect(await eventually { (try? await shop.mails.all().contains { $0.to == "good@shop.test" && $0.kind == .welcome }) == true })
            }
        }

        /// An order whose customer the read model does not have yet (a worker's pool still on a
        /// demoted primary after a failover) is retried, not dead-lettered at once: once the
        /// customer is there, both of its mails go out and nothing is dead-lettered.
        @Test func aReferenceThatAppearsDuringTheRetriesIsMailed() async throws {
            try await withShop { shop in
                let orders = EntityType.order.stream(.created)
                let product = try #require(try await shop.gateway.post("/product", ["name": "Late bloomer", "price": 7]).ids.first)
                _ = try await shop.pool.send(
                    XADD(
                        RedisArgument(orders),
                        fields: [
                            StreamField("event_id", UUID().uuidString),
                            StreamField("entity", #"{"id":"o-late","product_ids":["\#(product)"],"customer_id":"c-late"}"#),
                        ]))
                // Both groups found no customer and are retrying it (dead-lettered at once, it
                // would never be delivered a second time).
                let groups = ["crm", "billing"]
                for group in groups {
                    #expect(
                        await eventually {
                            let pending = try? await shop.pool.send(XPENDINGDetail(RedisArgument(orders), group: group, count: 10))
                            return pending?.first.map { $0.deliveryCount >= 2 } ?? false
                        }, "\(group)")
                }
                let customers = RedisArgument(EntityType.customer.keys.entities)
                _ = try await shop.pool.send(
                    RawCommand(["HSET", customers, "c-late", #"{"id":"c-late","name":"Late","email":"late@shop.test"}"#], keys: [customers]))

                #expect(
                    await eventually {
                        let kinds = (try? await shop.mails.all().filter { $0.to == "late@shop.test" }.map(\.kind)) ?? []
                        return Set(kinds) == [.thankYou, .pleasePay]
                    })
                for group in groups {
                    #expect(try await DeadLetters(client: shop.pool, stream: orders, group: group).list().isEmpty, "\(group)")
                }
            }
        }

        /// The workers hold an event to what a rebuild folds in and a command could make
        /// (``Delivery/shopEntity(_:)``), and the runtime refuses an `event_id` that cannot
        /// identify it: each of these got its mail before (or, for the blank ids, all but the
        /// first were acked as its duplicates with no mail and no dead letter).
        @Test func eventsNoCommandCouldMakeAreDeadLetteredNotMailed() async throws {
            try await withShop { shop in
                let customers = EntityType.customer.stream(.created)
                let orders = EntityType.order.stream(.created)
                func add(_ stream: String, _ fields: [(String, String)]) async throws {
                    _ = try await shop.pool.send(XADD(RedisArgument(stream), fields: fields.map { StreamField($0.0, $0.1) }))
                }
                func customer(_ id: String) -> String { #"{"id":"\#(id)","name":"N","email":"\#(id)@bad.test"}"# }
                try await add(customers, [("event_id", ""), ("entity", customer("c10")), ("entity_id", "c10"), ("version", "1")])
                try await add(customers, [("event_id", ""), ("entity", customer("c20")), ("entity_id", "c20"), ("version", "1")])
                try await add(customers, [("event_id", "  "), ("entity", customer("c21")), ("entity_id", "c21"), ("version", "1")])
                try await add(customers, [("event_id", UUID().uuidString), ("entity", customer("c6")), ("entity_id", "OTHER"), ("version", "1")])
                try await add(customers, [("event_id", UUID().uuidString), ("entity", customer("c7")), ("entity_id", "c7"), ("version", "abc")])
                try await add(customers, [("event_id", UUID().uuidString), ("entity", #"{"id":"c8","name":"N","name":"M","email":"c8@bad.test"}"#)])
                try await add(customers, [("event_id", UUID().uuidString), ("entity", #"{"id":"c9","name":"N"}"#), ("entity_id", "c9"), ("version", "1")])

                let buyer = try #require(try await shop.gateway.post("/customer", ["name": "Buyer", "email": "buyer@shop.test"]).ids.first)
                let product = try #require(try await shop.gateway.post("/product", ["name": "P", "price": 3]).ids.first)
                try await add(orders, [("event_id", UUID().uuidString), ("entity", #"{"id":"o1","product_ids":[],"customer_id":"\#(buyer)"}"#)])
                try await add(orders, [("event_id", UUID().uuidString), ("entity", #"{"id":"o2","product_ids":["\#(product)","nope"],"customer_id":"\#(buyer)"}"#)])

                let crmCustomers = DeadLetters(client: shop.pool, stream: customers, group: "crm")
                let crmOrders = DeadLetters(client: shop.pool, stream: orders, group: "crm")
                let billingOrders = DeadLetters(client: shop.pool, stream: orders, group: "billing")
                #expect(await eventually { (try? await crmCustomers.list().count) == 7 })
                #expect(await eventually { (try? await crmOrders.list().count) == 2 })
                #expect(await eventually { (try? await billingOrders.list().count) == 2 })
                let reasons = try await crmCustomers.list().map { "\($0.reason) \($0.error)" }
                for expected in ["event_id is empty", "event_id is blank", "entity_id 'OTHER' differs", "version 'abc'", "duplicate", "it has no field 'email'"] {
                    #expect(reasons.contains { $0.contains(expected) }, "\(expected): \(reasons)")
                }
                let orderReasons = try await crmOrders.list().map { "\($0.reason) \($0.error)" }
                #expect(orderReasons.contains { $0.contains("product_ids") && $0.contains("empty") }, "\(orderReasons)")
                #expect(orderReasons.contains { $0.contains("product nope, which does not exist") }, "\(orderReasons)")

                // A good customer after them is mailed; none of them, nor the buyer's two orders.
                _ = try await shop.gateway.post("/customer", ["name": "Good", "email": "good@shop.test"])
                #expect(await eventually { (try? await shop.mails.all().contains { $0.to == "good@shop.test" }) == true })
                let mails = try await shop.mails.all()
                #expect(!mails.contains { $0.to.hasSuffix("@bad.test") }, "\(mails)")
                #expect(mails.filter { $0.to == "buyer@shop.test" }.map(\.kind) == [.welcome], "\(mails)")
            }
        }

        /// A deletion gets its good-bye only when the read model shows the customer deleted at
        /// the event's version: hand-written deletions of a customer never created, of a live
        /// one at its version, and of a deleted one at another version are dead-lettered with
        /// their reason, unmailed (a trial: each got a good-bye); a real deletion is mailed.
        @Test func deletionsNoCommandMadeGetNoGoodBye() async throws {
            try await withShop { shop in
                let deletions = EntityType.customer.stream(.deleted)
                let live = try #require(try await shop.gateway.post("/customer", ["name": "Alice", "email": "alice@shop.test"]).ids.first)
                let gone = try #require(try await shop.gateway.post("/customer", ["name": "Bob", "email": "bob@shop.test"]).ids.first)
                #expect(try await shop.gateway.delete("/customer/\(gone)").status == 200)
                #expect(await eventually { (try? await shop.mails.all().contains { $0.to == "bob@shop.test" && $0.kind == .goodbye }) == true })
                for (id, version) in [("ghost", "2"), (live, "1"), (gone, "3")] {
                    let entity = #"{"id":"\#(id)","name":"N","email":"\#(id)@bad.test"}"#
                    _ = try await shop.pool.send(
                        XADD(
                            RedisArgument(deletions),
                            fields: [
                                StreamField("event_id", UUID().uuidString), StreamField("entity", entity), StreamField("entity_id", id),
                                StreamField("version", version),
                            ]))
                }
                let letters = DeadLetters(client: shop.pool, stream: deletions, group: "crm")
                #expect(await eventually { (try? await letters.list().count) == 3 })
                let reasons = try await letters.list().map { "\($0.reason) \($0.error)" }
                for expected in ["customer ghost at version 2, which was never created", "customer \(live) at version 1, which the read model holds live at version 1", "customer \(gone) at version 3, which the read model holds deleted at version 2"] {
                    #expect(reasons.contains { $0.contains(expected) }, "\(expected): \(reasons)")
                }
                #expect(try await shop.mails.all().filter { $0.to.hasSuffix("@bad.test") }.isEmpty)
            }
        }
    }
}
