import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// The original client's acceptance scenario (steps 1 to 9 of the reference), over HTTP through
    /// the gateway, against the whole shop on a real Redis.
    @Suite struct ReferenceScenarioTests {
        ///
        /// Also with every entity type spread over 4 partitions (``ShopLayout``):
        /// every list in creation order across the partitions, each mail once.
        @Test(arguments: [1, 4]) func stepsOneToNine(partitions: Int) async throws {
            let layout = ShopLayout(partitions: partitions)
            try await withShop(layout: layout) { shop in
                let g = shop.gateway
                func name(_ i: Int) -> String { "customer\(i)x" + String(UUID().uuidString.prefix(4)).lowercased() }

                // 1. create 10 customers (one POST with an array); GET /customers has 10.
                let customerBody = JSONValue.array((0..<10).map { i in ["name": .string(name(i).capitalized), "email": .string("\(name(i))@server.com")] })
                let created = try await g.post("/customers", customerBody)
                #expect(created.status == 200)
                try #require(created.ids.count == 10)
                let customers = try #require(try await g.get("/customers").json?.arrayValue)
                #expect(customers.count == 10)
                // Creation order is kept, so "the third customer" is the same for every client.
                #expect(customers.compactMap { $0["id"]?.stringValue } == created.ids)
                #expect(customers.allSatisfy { $0["name"]?.stringValue != nil && $0["email"]?.stringValue != nil })

                // 2. create 10 products; GET /products has 10.
                let productBody = JSONValue.array((0..<10).map { i in ["name": .string("Product \(i)"), "price": .number(Double(10 + i * 10))] })
                let products = try await g.post("/products", productBody).ids
                try #require(products.count == 10)
                #expect(try await g.count("/products") == 10)

                // 3. inventory of 100 for every product; GET /inventory has 10.
                let stock = try await g.post("/inventory", .array(products.map { ["product_id": .string($0), "amount": 100] }))
                #expect(stock.status == 200)
                #expect(stock.ids.count == 10)
                #expect(try await g.count("/inventory") == 10)

                // 4. 10 orders of 1 to 10 products for the customers, one POST each; GET /orders has 10.
                var orders: [String] = []
                var units: [String: Int] = [:]
                for i in 0..<10 {
                    let items = (0...i).map { products[($0 * 7 + i) % 10] }
                    for p in items { units[p, default: 0] += 1 }
                    let reply = try await g.post("/orders", ["product_ids": .array(items.map { .string($0) }), "customer_id": .string(created.ids[i])])
                    #expect(reply.status == 200, "\(reply)")
                    orders += reply.ids
                }
                try #require(orders.count == 10)
                #expect(try await g.count("/orders") == 10)
                // Every unit was taken from stock.
                for item in try #require(try await g.get("/inventory").json?.arrayValue) {
                    let product = try #require(item["product_id"]?.stringValue)
                    #expect(item["amount"]?.numberValue == Double(100 - (units[product] ?? 0)))
                }

                // 5. change the first product of the second order (PUT the whole object); GET shows it.
                var second = try #require(try await g.get("/order/\(orders[1])").json)
                let firstProduct = try #require(second["product_ids"]?.arrayValue?.first?.stringValue)
                let replacement = try #require(products.first { $0 != firstProduct })
                guard case .object(var fields) = second, var ids = fields["product_ids"]?.arrayValue else { throw TestFailure("not an order") }
                ids[0] = .string(replacement)
                fields["product_ids"] = .array(ids)
                second = .object(fields)
                let put = try await g.put("/order/\(orders[1])", second)
                #expect(put.status == 200)
                #expect(put.json == .bool(true))
                #expect(try await g.get("/order/\(orders[1])").json?["product_ids"]?.arrayValue?.first?.stringValue == replacement)

                // 6. delete the third order; GET /order/<id> is null (status 200).
                let deleteOrder = try await g.delete("/order/\(orders[2])")
                #expect(deleteOrder.status == 200)
                #expect(deleteOrder.json == .bool(true))
                let goneOrder = try await g.get("/order/\(orders[2])")
                #expect(goneOrder.status == 200)
                #expect(goneOrder.text == "null")

                // 7. delete the third customer; GET /customer/<id> is null.
                let deleteCustomer = try await g.delete("/customer/\(created.ids[2])")
                #expect(deleteCustomer.json == .bool(true))
                let goneCustomer = try await g.get("/customer/\(created.ids[2])")
                #expect(goneCustomer.status == 200)
                #expect(goneCustomer.text == "null")
                #expect(try await g.count("/customers") == 9)

                // 8. bill the first order: a list of ids comes back.
                let billing = try await g.post("/billing", ["order_id": .string(orders[0])])
                #expect(billing.status == 200)
                #expect(billing.ids.count == 1)

                // 9. GET /orders/unbilled has 8.
                let unbilled = try #require(try await g.get("/orders/unbilled").json?.arrayValue)
                #expect(unbilled.count == 8)
                #expect(!unbilled.contains { $0["id"]?.stringValue == orders[0] || $0["id"]?.stringValue == orders[2] })

                // The report has every list.
                let report = try #require(try await g.get("/report").json)
                #expect(report["customers"]?.arrayValue?.count == 9)
                #expect(report["orders"]?.arrayValue?.count == 9)
                #expect(report["billings"]?.arrayValue?.count == 1)
                #expect(report["products"]?.arrayValue?.count == 10)
                #expect(report["inventory"]?.arrayValue?.count == 10)

                // And the workers sent every mail the events call for, each once.
                let expected = try await expectedMails(shop.pool, layout: layout)
                #expect(expected.count == 32)  // 10 welcome, 1 good-bye, 10 thank-you, 10 please-pay, 1 payment-received
                let arrived = await eventually(timeout: .seconds(60)) {
                    let sent = (try? await shop.mailKeys()) ?? [:]
                    return expected.keys.allSatisfy { sent[$0] != nil }
                }
                #expect(arrived)
                let sent = try await shop.mailKeys()
                #expect(sent.count == expected.count)
                #expect(sent.values.allSatisfy { $0 == 1 })
                // The order of the deleted customer still got its mails, at the last known address.
                let all = try await shop.mails.all()
                let deletedEmail = try #require(customers[2]["email"]?.stringValue)
                #expect(all.contains { $0.to == deletedEmail && $0.kind == .goodbye })
                #expect(all.contains { $0.to == deletedEmail && $0.kind == .thankYou })

                try await expectSingleCreatesSpread(shop, layout: layout)
            }
        }

        /// A batch lies in one partition (one script: all or none); customers created one by one
        /// spread over the partitions, each in its id's, and are listed in creation order across them.
        func expectSingleCreatesSpread(_ shop: TestShop, layout: ShopLayout) async throws {
            var single: [String] = []
            for i in 0..<16 { single += try await shop.gateway.post("/customer", ["name": "S\(i)", "email": "s\(i)@server.com"]).ids }
            let listed = try #require(try await shop.gateway.get("/customers").json?.arrayValue).compactMap { $0["id"]?.stringValue }
            #expect(Array(listed.suffix(16)) == single)
            let spread = try await partitionsHolding(single, of: .customer, layout: layout, pool: shop.pool)
            #expect(layout.partitions == 1 || spread.count > 1, "16 customers in partitions \(spread.sorted()) of \(layout.partitions)")
        }

        /// The partitions of `type` whose ids set holds any of `ids`; expects every id of each
        /// partition to be its own.
        func partitionsHolding(_ ids: [String], of type: EntityType, layout: ShopLayout, pool: RedisConnectionPool) async throws -> Set<Int> {
            var holding = Set<Int>()
            for partition in layout.partitions(type) {
                let key = RedisArgument(partition.keys.ids)
                let held = try await pool.send(RawCommand(["ZRANGE", key, "0", "-1"], keys: [key])).array?.compactMap(\.string) ?? []
                #expect(held.allSatisfy { layout.partition(of: type, id: $0) == partition.partition })
                if !Set(held).isDisjoint(with: ids) { holding.insert(partition.partition) }
            }
            return holding
        }

        /// Read-your-writes: a query right after a command sees it, from any process (here: the
        /// owning service and the gateway, which share nothing but Redis).
        @Test func readYourWrites() async throws {
            try await withShop(workers: []) { shop in
                for i in 0..<20 {
                    let ids = try await shop.gateway.post("/customer", ["name": "N\(i)", "email": "n\(i)@x.org"]).ids
                    let id = try #require(ids.first)
                    #expect(try await shop.gateway.get("/customer/\(id)").json?["name"]?.stringValue == "N\(i)")
                    #expect(try await shop.client(.customer).get("/customer/\(id)").json?["email"]?.stringValue == "n\(i)@x.org")
                    #expect(try await shop.gateway.put("/customer/\(id)", ["name": "M\(i)", "email": "m\(i)@x.org"]).json == .bool(true))
                    #expect(try await shop.client(.customer).get("/customer/\(id)").json?["name"]?.stringValue == "M\(i)")
                }
            }
        }
    }
}
