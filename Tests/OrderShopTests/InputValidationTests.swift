import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// Issue 13, Why 5 and 6: what a command accepts, and the 4xx/5xx that name the cause.
    @Suite struct InputValidationTests {
        /// Why 5: 300 units of a product with a 1 MB name made CRM build a 300 MB mail. Refused at input.
        @Test func amplificationIsRefusedAtInput() async throws {
            try await withShop(workers: []) { shop in
                let g = shop.gateway
                let huge = String(repeating: "n", count: 1 << 20)
                expectError(try await g.post("/product", ["name": .string(huge), "price": 1]), 400, field: "name", "1 MB product name")
                expectError(
                    try await g.post("/product", ["name": .string(String(repeating: "n", count: 201)), "price": 1]), 400, field: "name",
                    "name one byte too long")
                #expect(try await g.post("/product", ["name": .string(String(repeating: "n", count: 200)), "price": 1]).status == 200)
                // A price up to 10^9 euros: beyond, bills could not be stated to the cent.
                expectError(try await g.post("/product", ["name": "Dear", "price": .number(1e300)]), 400, field: "price", "price 1e300")
                expectError(try await g.post("/product", ["name": "Dear", "price": .number(1_000_000_000.01)]), 400, field: "price", "price just above 1e9")
                #expect(try await g.post("/product", ["name": "Dear", "price": .number(1e9)]).status == 200)
                expectError(
                    try await g.post("/customer", ["name": .string(String(repeating: "c", count: 201)), "email": "c@shop.test"]), 400, field: "name",
                    "customer name")
                expectError(
                    try await g.post("/customer", ["name": "C", "email": .string(String(repeating: "e", count: 250) + "@x.yz")]), 400, field: "email",
                    "long email")

                let customer = try #require(try await g.post("/customer", ["name": "C", "email": "c@shop.test"]).ids.first)
                let product = try #require(try await g.post("/product", ["name": "P", "price": 1]).ids.first)
                _ = try await g.post("/inventory", ["product_id": .string(product), "amount": 100_000])
                let line = JSONValue.array(Array(repeating: .string(product), count: 300))
                expectError(try await g.post("/order", ["product_ids": line, "customer_id": .string(customer)]), 400, field: "product_ids", "300 units")
                #expect(try await g.count("/orders") == 0)
                let allowed = JSONValue.array(Array(repeating: .string(product), count: 100))
                #expect(try await g.post("/order", ["product_ids": allowed, "customer_id": .string(customer)]).status == 200)

                // msg refuses an oversized mail with 400 naming the field.
                let msg = shop.client(.msg)
                expectError(
                    try await msg.post("/email", ["to": "a@shop.test", "msg": .string(String(repeating: "m", count: (256 << 10) + 1))]), 400, field: "msg",
                    "huge mail")
            }
        }

        /// Why 6: invalid UTF-8 and 1e309 gave a 400 quoting Swift's DecodingError without a field;
        /// duplicate keys were accepted (first wins).
        @Test func malformedJSONNamesTheField() async throws {
            try await withShop(workers: []) { shop in
                let g = shop.gateway
                let invalidUTF8 = Array(#"{"name": ""#.utf8) + [0xFF, 0xFE] + Array(#"", "email": "u@shop.test"}"#.utf8)
                expectError(try await g.send(.POST, "/customer", body: invalidUTF8), 400, field: "name", "invalid UTF-8")
                expectError(try await g.send(.POST, "/product", body: Array(#"{"name": "P", "price": 1e309}"#.utf8)), 400, field: "price", "1e309")
                let product = try #require(try await g.post("/product", ["name": "P", "price": 1]).ids.first)
                let duplicate = Array(#"{"product_id": "\#(product)", "amount": 1, "amount": 1000}"#.utf8)
                let reply = try await g.send(.POST, "/inventory", body: duplicate)
                expectError(reply, 400, field: "amount", "duplicate key")
                #expect(reply.errorMessage?.contains("amount") == true, "\(reply)")
                #expect(try await g.count("/inventory") == 0)
                // Whole, only too large: out of range, not "must be a whole number".
                let huge = try await g.send(.POST, "/inventory", body: Array(#"{"product_id": "\#(product)", "amount": 1e20}"#.utf8))
                expectError(huge, 400, field: "amount", "1e20")
                #expect(huge.errorMessage?.contains("must be between 0 and 1000000000") == true, "\(huge)")
                expectError(try await g.send(.POST, "/customer", body: Array("{".utf8)), 400, field: "body", "truncated")
                expectError(try await g.send(.POST, "/customers", body: Array(#"[{"name": "A", "email": "a@b.c", "name": "B"}]"#.utf8)), 400, field: "name", "duplicate in batch")
            }
        }

        /// An id in the path is percent-decoded (`%2D` is `-`), at the gateway and at the owner
        /// (a PUT is forwarded with the path as sent); a `%` that is no escape is a 400 naming
        /// `id`. Before, the escaped id of a customer that exists answered `null`, PUT 404, and
        /// `/customer/%ZZ` `null` 200.
        @Test func percentEncodedIDsInThePath() async throws {
            try await withShop(workers: []) { shop in
                let id = try #require(try await shop.gateway.post("/customer", ["name": "P", "email": "p@shop.test"]).ids.first)
                let escaped = id.replacingOccurrences(of: "-", with: "%2D")
                for client in [shop.gateway, shop.client(.customer)] {
                    #expect(try await client.get("/customer/\(escaped)").json?["id"]?.stringValue == id)
                    let put = try await client.put("/customer/\(escaped)", ["name": "Q", "email": "q@shop.test"])
                    #expect(put.status == 200, "\(put)")
                }
                // Over a raw socket: the HTTP client escapes a stray '%' itself.
                for service in [ServiceName.gateway, .customer] {
                    let url = shop.stack.addresses.url(service)
                    let port = try loopbackPort(url)
                    for request in ["GET /customer/%ZZ", "DELETE /customer/a%2", "GET /customer/%C3%28"] {
                        let text = try await rawExchange(port: port, Array("\(request) HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n".utf8))
                        #expect(text.hasPrefix("HTTP/1.1 400") && text.contains(#""field":"id""#), "\(service) \(request): \(text)")
                    }
                }
                #expect(try await shop.gateway.get("/customer/\(id)").json?["name"]?.stringValue == "Q")
            }
        }

        /// A batch in which two share a unique value (two stock records of one product, two
        /// billings of one order) is a 400 naming the field; one already held is a 409 naming its
        /// holder. Before, the batch's case answered 409 naming as the holder the batch's own
        /// first new id, which never came to exist.
        @Test func uniqueValueTwiceInABatch() async throws {
            try await withShop(workers: []) { shop in
                let g = shop.gateway
                let product = try #require(try await g.post("/product", ["name": "P", "price": 1]).ids.first)
                let twice: JSONValue = [["product_id": .string(product), "amount": 1], ["product_id": .string(product), "amount": 2]]
                let reply = try await g.post("/inventory", twice)
                expectError(reply, 400, field: "product_id", "twice in a batch")
                #expect(reply.errorMessage?.contains("appears more than once in this request") == true, "\(reply)")
                #expect(try await g.count("/inventory") == 0)
                let stock = try #require(try await g.post("/inventory", ["product_id": .string(product), "amount": 1]).ids.first)
                let held = try await g.post("/inventory", ["product_id": .string(product), "amount": 1])
                expectError(held, 409, field: "product_id", "held")
                #expect(held.errorMessage?.contains(stock) == true, "\(held)")
            }
        }

        /// Why 6: an order for an unknown product answered 409 "out of stock"; one for a deleted product was accepted.
        @Test func ordersOfUnknownOrDeletedProductsAreRefused() async throws {
            try await withShop(workers: []) { shop in
                let g = shop.gateway
                let customer = try #require(try await g.post("/customer", ["name": "C", "email": "c@shop.test"]).ids.first)
                let unknown = try await g.post("/order", ["product_ids": ["no-such-product"], "customer_id": .string(customer)])
                #expect([400, 404].contains(unknown.status), "\(unknown)")
                #expect(unknown.errorField == "product_ids", "\(unknown)")

                let product = try #require(try await g.post("/product", ["name": "Gone", "price": 3]).ids.first)
                _ = try await g.post("/inventory", ["product_id": .string(product), "amount": 10])
                let kept = try #require(try await g.post("/product", ["name": "Kept", "price": 2]).ids.first)
                _ = try await g.post("/inventory", ["product_id": .string(kept), "amount": 10])
                let order = try #require(try await g.post("/order", ["product_ids": [.string(product)], "customer_id": .string(customer)]).ids.first)
                #expect(try await g.delete("/product/\(product)").status == 200)
                let deleted = try await g.post("/order", ["product_ids": [.string(product)], "customer_id": .string(customer)])
                #expect([400, 404].contains(deleted.status), "\(deleted)")
                #expect(deleted.errorField == "product_ids", "\(deleted)")
                #expect(try await g.count("/orders") == 1)
                // An existing order may keep its units of the deleted product, but not add more.
                let more = try await g.put("/order/\(order)", ["product_ids": [.string(product), .string(product)], "customer_id": .string(customer)])
                #expect(more.status == 400 && more.errorField == "product_ids", "\(more)")
                let keep = try await g.put("/order/\(order)", ["product_ids": [.string(product), .string(kept)], "customer_id": .string(customer)])
                #expect(keep.status == 200, "\(keep)")
            }
        }

        /// Why 6: a wrong Redis password answered HTTP 500 with Redis's text.
        @Test func redisAuthFailureIs503() async throws {
            try await withRedisServer(.with { $0.password = "right-password" }) { server in
                let pool = try server.makePool { $0.authentication = .init(password: "wrong-password") ; $0.reconnect.retryWindow = .zero }
                let context = try ShopContext(pool: pool, logger: testLogger)
                for service in [ServiceName.gateway, .customer] {
                    let app = Application(router: buildRouter(for: service, context: context, httpClient: HTTPClient.shared), logger: testLogger)
                    try await app.test(.router) { client in
                        try await client.execute(uri: "/customers", method: .get) { response in
                            #expect(response.status == .serviceUnavailable, "\(service)")
                            let text = String(buffer: response.body)
                            #expect(!text.contains("WRONGPASS") && !text.contains("password"), "\(service): \(text)")
                        }
                    }
                }
                await pool.shutdown()
            }
        }
    }
}
