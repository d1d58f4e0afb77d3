import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// Reserving stock is one atomic step: concurrent orders never oversell, an order whose stock
    /// cannot all be taken changes nothing, and updating or deleting an order returns its stock.
    @Suite struct StockTests {
        /// Creates a customer and products with the given stock; answers their ids.
        func seed(_ shop: TestShop, stock: [Int]) async throws -> (customer: String, products: [String], inventory: [String]) {
            let customer = try #require(try await shop.gateway.post("/customer", ["name": "Buyer", "email": "buyer@shop.test"]).ids.first)
            let products = try await shop.gateway.post("/products", .array(stock.indices.map { ["name": .string("P\($0)"), "price": 10] })).ids
            let inventory = try await shop.gateway.post(
                "/inventory", .array(zip(products, stock).map { ["product_id": .string($0), "amount": .number(Double($1))] })
            ).ids
            try #require(products.count == stock.count && inventory.count == stock.count)
            return (customer, products, inventory)
        }

        func amount(_ shop: TestShop, _ inventoryID: String) async throws -> Int? {
            (try await shop.gateway.get("/inventory/\(inventoryID)").json?["amount"]?.numberValue).map { Int($0) }
        }

        @Test func fiftyConcurrentOrdersAgainstStockOfTwenty() async throws {
            try await withShop(workers: []) { shop in
                let (customer, products, inventory) = try await seed(shop, stock: [20])
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<50 {
                        group.addTask {
                            try await shop.gateway.post("/orders", ["product_ids": [.string(products[0])], "customer_id": .string(customer)]).status
                        }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == 200 }.count == 20)
                #expect(statuses.filter { $0 == 409 }.count == 30)
                #expect(try await amount(shop, inventory[0]) == 0)
                #expect(try await shop.gateway.count("/orders") == 20)

                // Never below zero: every stock change the event store recorded is >= 0, and there
                // is exactly one per successful order.
                let changes = try await shop.store.events(.inventory).events.filter { $0.action == .updated }
                #expect(changes.count == 20)
                let amounts = try changes.map { try JSONCoding.decode(Inventory.self, from: $0.json).amount }
                #expect(amounts.allSatisfy { $0 >= 0 })
                #expect(Set(amounts) == Set(0..<20))
                #expect(changes.map(\.version).compactMap { $0 }.sorted() == Array(2...21))
            }
        }

        @Test func anOrderIsAllOrNothing() async throws {
            try await withShop(workers: []) { shop in
                let (customer, products, inventory) = try await seed(shop, stock: [5, 1])
                // Two units of the second product: not there, so nothing changes, also not the first product's stock.
                let reply = try await shop.gateway.post(
                    "/order", ["product_ids": [.string(products[0]), .string(products[1]), .string(products[1])], "customer_id": .string(customer)])
                #expect(reply.status == 409)
                #expect(reply.isJSON)
                #expect(reply.errorField == "product_ids")
                #expect(try await amount(shop, inventory[0]) == 5)
                #expect(try await amount(shop, inventory[1]) == 1)
                #expect(try await shop.gateway.count("/orders") == 0)
                #expect(try await shop.pool.send(XLEN(RedisArgument(EntityType.order.stream(.created)))) == 0)

                // A batch of orders is one step too: the second one cannot be served, so neither is.
                let batch = try await shop.gateway.post(
                    "/orders",
                    [
                        ["product_ids": [.string(products[1])], "customer_id": .string(customer)],
                        ["product_ids": [.string(products[1])], "customer_id": .string(customer)],
                    ])
                #expect(batch.status == 409)
                #expect(try await amount(shop, inventory[1]) == 1)

                // A product that does not exist is a bad reference (issue 13: it was 409 "out of stock").
                let unknown = try await shop.gateway.post("/order", ["product_ids": ["no-such-product"], "customer_id": .string(customer)])
                #expect(unknown.status == 400 && unknown.errorField == "product_ids", "\(unknown)")
                // A live product without a stock record is out of stock.
                let unstocked = try #require(try await shop.gateway.post("/product", ["name": "No stock", "price": 1]).ids.first)
                let none = try await shop.gateway.post("/order", ["product_ids": [.string(unstocked)], "customer_id": .string(customer)])
                #expect(none.status == 409, "\(none)")
            }
        }

        @Test func updateAndDeleteReturnStock() async throws {
            try await withShop(workers: []) { shop in
                let (customer, products, inventory) = try await seed(shop, stock: [3, 3])
                let order = try #require(
                    try await shop.gateway.post("/order", ["product_ids": [.string(products[0]), .string(products[0])], "customer_id": .string(customer)]).ids.first)
                #expect(try await amount(shop, inventory[0]) == 1)

                // Replace one unit of product 0 by product 1: one back to 0, one taken from 1.
                let put = try await shop.gateway.put(
                    "/order/\(order)", ["id": .string(order), "product_ids": [.string(products[0]), .string(products[1])], "customer_id": .string(customer)])
                #expect(put.json == .bool(true))
                #expect(try await amount(shop, inventory[0]) == 2)
                #expect(try await amount(shop, inventory[1]) == 2)

                // An update that needs more than there is changes nothing.
                let tooMuch = try await shop.gateway.put(
                    "/order/\(order)", ["product_ids": .array(Array(repeating: .string(products[1]), count: 4)), "customer_id": .string(customer)])
                #expect(tooMuch.status == 409)
                #expect(try await amount(shop, inventory[1]) == 2)
                #expect(try await shop.gateway.get("/order/\(order)").json?["product_ids"]?.arrayValue?.count == 2)

                // Delete returns everything.
                #expect(try await shop.gateway.delete("/order/\(order)").json == .bool(true))
                #expect(try await amount(shop, inventory[0]) == 3)
                #expect(try await amount(shop, inventory[1]) == 3)
                // Deleting again: 404, and the stock is not returned twice.
                #expect(try await shop.gateway.delete("/order/\(order)").status == 404)
                #expect(try await amount(shop, inventory[0]) == 3)
            }
        }
    }
}

extension ShopIntegration.StockTests {
    /// An order keeps its customer after the customer left, and can still be changed; moving it
    /// to a customer who does not exist is refused.
    @Test func ordersOfACustomerWhoLeft() async throws {
        try await withShop(workers: []) { shop in
            let (customer, products, _) = try await seed(shop, stock: [5])
            let order = try #require(try await shop.gateway.post("/order", ["product_ids": [.string(products[0])], "customer_id": .string(customer)]).ids.first)
            #expect(try await shop.gateway.delete("/customer/\(customer)").json == .bool(true))
            let keep = try await shop.gateway.put(
                "/order/\(order)", ["product_ids": [.string(products[0]), .string(products[0])], "customer_id": .string(customer)])
            #expect(keep.json == .bool(true))
            let move = try await shop.gateway.put("/order/\(order)", ["product_ids": [.string(products[0])], "customer_id": "nobody"])
            #expect(move.status == 400)
            #expect(move.errorField == "customer_id")
            // A new order needs a customer who exists.
            #expect(try await shop.gateway.post("/order", ["product_ids": [.string(products[0])], "customer_id": .string(customer)]).status == 400)
        }
    }
}
