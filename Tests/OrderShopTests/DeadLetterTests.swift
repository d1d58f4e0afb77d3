import Foundation
@testable import OrderShop
import RedisClient
import StreamWorker
import TestSupport
import Testing

extension ShopIntegration {
    /// Events the workers can never handle go to the dead letters with their reason, at once, and the
    /// workers go on with the rest (no crash loop, no retry storm).
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
                #expect((letter.reason + " " + letter.error).contains("customer ghost"), "\(letter)")
                #expect(try await crmCustomers.list().first?.deliveryCount == 1)  // malformed: at once, not after retries
                #expect(await eventually { (try? await shop.mails.all().contains { $0.to == "good@shop.test" && $0.kind == .welcome }) == true })
            }
        }
    }
}
