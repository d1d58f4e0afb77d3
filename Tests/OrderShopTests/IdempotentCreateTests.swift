import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// `Idempotency-Key` on a create: a retry (after a lost answer, a timeout, a 503) makes
    /// nothing twice and answers the first request's ids; the key with another body is refused.
    @Suite struct IdempotentCreateTests {
        @Test("a create retried through the gateway with its Idempotency-Key answers the same ids, marked replayed, and appends one event")
        func retriedCreateMakesOnce() async throws {
            try await withShop(workers: []) { shop in
                let body: JSONValue = ["name": "Ada", "email": "ada@shop.test"]
                let first = try await shop.gateway.post("/customers", body, idempotencyKey: "signup-ada-1")
                #expect(first.status == 200, "\(first)")
                #expect(!first.replayed)
                let retry = try await shop.gateway.post("/customers", body, idempotencyKey: "signup-ada-1")
                #expect(retry.status == 200, "\(retry)")
                #expect(retry.replayed, "the retry did not say it replayed")
                #expect(retry.ids == first.ids && first.ids.count == 1, "first \(first), retry \(retry)")
                #expect(try await shop.gateway.count("/customers") == 1)
                #expect(try await shop.pool.send(XLEN(RedisArgument(EntityType.customer.stream(.created)))) == 1)

                // The same body without a key, or with another key, is a new request.
                #expect(try await shop.gateway.post("/customers", body).ids.count == 1)
                #expect(try await shop.gateway.post("/customers", body, idempotencyKey: "signup-ada-2").ids.count == 1)
                #expect(try await shop.gateway.count("/customers") == 3)
            }
        }

        @Test("an order retried with its Idempotency-Key takes its stock once: the retry answers its ids instead of 409 'out of stock'")
        func retriedOrderTakesStockOnce() async throws {
            try await withShop(workers: []) { shop in
                let customer = try #require(try await shop.gateway.post("/customer", ["name": "B", "email": "b@shop.test"]).ids.first)
                let product = try #require(try await shop.gateway.post("/product", ["name": "P", "price": 3]).ids.first)
                let stock = try #require(try await shop.gateway.post("/inventory", ["product_id": .string(product), "amount": 1]).ids.first)
                let order: JSONValue = ["product_ids": [.string(product)], "customer_id": .string(customer)]
                let first = try await shop.gateway.post("/orders", order, idempotencyKey: "cart-7")
                #expect(first.status == 200, "\(first)")
                let retry = try await shop.gateway.post("/orders", order, idempotencyKey: "cart-7")
                #expect(retry.status == 200 && retry.replayed && retry.ids == first.ids, "first \(first), retry \(retry)")
                #expect(try await shop.gateway.get("/inventory/\(stock)").json?["amount"]?.numberValue == 0)
                #expect(try await shop.gateway.count("/orders") == 1)
                // Without the key the same order is a second one: the stock is gone.
                #expect(try await shop.gateway.post("/orders", order).status == 409)
            }
        }

        @Test("a key whose bytes are not UTF-8, or two keys, answer 400 at the gateway and at the owner, and create nothing")
        func keyThatIsNotUTF8() async throws {
            try await withShop(workers: []) { shop in
                let body = Array(#"{"name":"Raw","email":"raw@shop.test"}"#.utf8)
                /// One request over a raw socket (clients send only UTF-8 keys), its status and body.
                func post(_ service: ServiceName, keys: [[UInt8]]) async throws -> (status: Int, text: String) {
                    let url = shop.stack.addresses.url(service)
                    let port = try loopbackPort(url)
                    var request = Array("POST /customers HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nConnection: close\r\n".utf8)
                    for key in keys { request += Array("Idempotency-Key: ".utf8) + key + Array("\r\n".utf8) }
                    request += Array("Content-Length: \(body.count)\r\n\r\n".utf8) + body
                    let text = try await rawExchange(port: port, request)
                    return (Int(text.dropFirst("HTTP/1.1 ".count).prefix(3)) ?? 0, text)
                }
                for service in [ServiceName.gateway, .customer] {
                    // Both read as "\u{FFFD}\u{FFFD}": the second was answered the first's ids, its
                    // own customer never made.
                    for key: [UInt8] in [[0xff, 0xfe], [0xfe, 0xff]] {
                        let answer = try await post(service, keys: [key])
                        #expect(answer.status == 400 && answer.text.contains(#""field":"Idempotency-Key""#) && answer.text.contains("not UTF-8"), "\(service): \(answer.text)")
                    }
                    let two = try await post(service, keys: [Array("a".utf8), Array("b".utf8)])
                    #expect(two.status == 400 && two.text.contains("given 2 times"), "\(service): \(two.text)")
                    // A key in UTF-8 beyond ASCII is a key like any other.
                    let accepted = try await post(service, keys: [Array("clé-\(service)".utf8)])
                    #expect(accepted.status == 200, "\(service): \(accepted.text)")
                }
                #expect(try await shop.gateway.count("/customers") == 2)
            }
        }

        @Test("the key with another body answers 422 and creates nothing; a key that is empty or too long answers 400")
        func reusedOrInvalidKey() async throws {
            try await withShop(workers: []) { shop in
                #expect(try await shop.gateway.post("/products", ["name": "A", "price": 1], idempotencyKey: "k").status == 200)
                let reused = try await shop.gateway.post("/products", ["name": "B", "price": 1], idempotencyKey: "k")
                #expect(reused.status == 422, "\(reused)")
                #expect(reused.json?["field"]?.stringValue == "Idempotency-Key", "\(reused)")
                #expect(try await shop.gateway.count("/products") == 1)
                for bad in ["", String(repeating: "x", count: EventStore.CreateKey.maxBytes + 1)] {
                    let refused = try await shop.gateway.post("/products", ["name": "C", "price": 1], idempotencyKey: bad)
                    #expect(refused.status == 400, "\(refused)")
                    #expect(refused.json?["field"]?.stringValue == "Idempotency-Key", "\(refused)")
                }
                #expect(try await shop.gateway.count("/products") == 1)
            }
        }
    }
}

extension ShopIntegration.IdempotentCreateTests {
    @Test("a keyed create retried after what it references was deleted answers what the first request made; a new key is refused")
    func keyedRetryAfterItsReferenceWentAway() async throws {
        try await withRedisServer { server in
            let store = EventStore(pool: try server.makePool())
            try await store.create([Product(id: "p1", name: "P", price: 1)], trace: "t")
            let key = try #require(EventStore.CreateKey(key: "stock-1", body: Array("stock-1".utf8)))
            try await store.create([Inventory(id: "i1", productID: "p1", amount: 5)], trace: "t", key: key)
            try await store.delete(.product, id: "p1", trace: "t")
            let retry = try await store.create([Inventory(id: "i2", productID: "p1", amount: 5)], trace: "t", key: key)
            #expect(retry.replayedIDs == ["i1"])
            let other = try #require(EventStore.CreateKey(key: "stock-2", body: Array("stock-1".utf8)))
            await #expect(throws: ShopError.self) {
                try await store.create([Inventory(id: "i3", productID: "p1", amount: 5)], trace: "t", key: other)
            }
        }
    }
}
