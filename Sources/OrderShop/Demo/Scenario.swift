/// The original client's acceptance scenario (steps 1 to 9 of the reference), over HTTP.
///
/// Counts are checked relative to what was there before the run, so the scenario can run again
/// against the same shop (the original client flushed Redis first; this one never deletes data).
/// Positions ("the second order", "the third customer") are those of the entities this run created.
public struct Scenario: Sendable {
    public let shop: ShopClient

    public init(shop: ShopClient) { self.shop = shop }

    public struct Step: Sendable {
        public var number: Int
        public var title: String
        public var passed: Bool
        public var detail: String
    }

    public struct Outcome: Sendable {
        public var steps: [Step] = []
        public var duration: Duration = .zero
        public var customers: [String] = []
        public var products: [String] = []
        public var orders: [String] = []
        public var billings: [String] = []
        public var deletedOrder: String?
        public var deletedCustomer: String?
        public var passed: Bool { steps.count == 9 && steps.allSatisfy(\.passed) }
    }

    private struct Failed: Error { let detail: String }

    /// Runs the nine steps; stops at the first that fails. `log` gets one line per step.
    public func run(log: @Sendable (String) -> Void = { _ in }) async -> Outcome {
        var outcome = Outcome()
        let started = ContinuousClock.now
        var rng = SystemRandomNumberGenerator()

        func step(_ number: Int, _ title: String, _ body: () async throws -> String) async -> Bool {
            let s: Step
            do {
                s = Step(number: number, title: title, passed: true, detail: try await body())
            } catch let f as Failed {
                s = Step(number: number, title: title, passed: false, detail: f.detail)
            } catch {
                s = Step(number: number, title: title, passed: false, detail: "\(error)")
            }
            outcome.steps.append(s)
            let padded = title.count < 50 ? title + String(repeating: " ", count: 50 - title.count) : title
            log("  \(s.passed ? "ok  " : "FAIL") \(number). \(padded) \(s.detail)")
            return s.passed
        }
        func expect(_ condition: Bool, _ detail: @autoclosure () -> String) throws {
            if !condition { throw Failed(detail: detail()) }
        }
        func ok(_ reply: ShopClient.Reply, _ what: String) throws -> ShopClient.Reply {
            try expect(reply.status == 200, "\(what) answered \(reply)")
            return reply
        }
        func count(_ path: String) async throws -> Int {
            let reply = try ok(try await shop.get(path), "GET \(path)")
            guard let n = reply.json?.arrayValue?.count else { throw Failed(detail: "GET \(path) is not a JSON array: \(reply)") }
            return n
        }
        func name() -> String {
            let letters = Array("abcdefghijklmnopqrstuvwxyz")
            return String((0..<10).map { _ in letters.randomElement(using: &rng)! })
        }

        let unbilledBefore: Int
        do { unbilledBefore = try await count("/orders/unbilled") } catch {
            outcome.steps.append(Step(number: 0, title: "read /orders/unbilled", passed: false, detail: "\(error)"))
            log("  FAIL 0. the gateway does not answer: \(error)")
            return outcome
        }

        guard
            await step(1, "create 10 customers (POST /customers)", {
                let before = try await count("/customers")
                let body = JSONValue.array((0..<10).map { _ in
                    let n = name()
                    return ["name": .string(n.capitalized), "email": .string("\(n)@server.com")]
                })
                outcome.customers = try ok(try await shop.post("/customers", body), "POST /customers").ids
                try expect(outcome.customers.count == 10, "POST /customers answered \(outcome.customers.count) ids")
                let after = try await count("/customers")
                try expect(after == before + 10, "GET /customers has \(after), expected \(before + 10)")
                return "GET /customers -> \(after)"
            })
        else { return finish(outcome, started) }

        guard
            await step(2, "create 10 products (POST /products)", {
                let before = try await count("/products")
                let body = JSONValue.array((0..<10).map { _ in ["name": .string(name().capitalized), "price": .number(Double(Int.random(in: 10...1000, using: &rng)))] })
                outcome.products = try ok(try await shop.post("/products", body), "POST /products").ids
                try expect(outcome.products.count == 10, "POST /products answered \(outcome.products.count) ids")
                let after = try await count("/products")
                try expect(after == before + 10, "GET /products has \(after), expected \(before + 10)")
                return "GET /products -> \(after)"
            })
        else { return finish(outcome, started) }

        guard
            await step(3, "stock 100 of every product (POST /inventory)", {
                let before = try await count("/inventory")
                let body = JSONValue.array(outcome.products.map { ["product_id": .string($0), "amount": 100] })
                let ids = try ok(try await shop.post("/inventory", body), "POST /inventory").ids
                try expect(ids.count == 10, "POST /inventory answered \(ids.count) ids")
                let after = try await count("/inventory")
                try expect(after == before + 10, "GET /inventory has \(after), expected \(before + 10)")
                return "GET /inventory -> \(after)"
            })
        else { return finish(outcome, started) }

        guard
            await step(4, "10 orders of 1-10 products, one POST each", {
                let before = try await count("/orders")
                for _ in 0..<10 {
                    let products = (0..<Int.random(in: 1...10, using: &rng)).map { _ in JSONValue.string(outcome.products.randomElement(using: &rng)!) }
                    let body: JSONValue = ["product_ids": .array(products), "customer_id": .string(outcome.customers.randomElement(using: &rng)!)]
                    let ids = try ok(try await shop.post("/orders", body), "POST /orders").ids
                    try expect(ids.count == 1, "POST /orders answered \(ids.count) ids")
                    outcome.orders += ids
                }
                let after = try await count("/orders")
                try expect(after == before + 10, "GET /orders has \(after), expected \(before + 10)")
                return "GET /orders -> \(after)"
            })
        else { return finish(outcome, started) }

        guard
            await step(5, "change the second order's first product (PUT)", {
                let id = outcome.orders[1]
                guard var order = try ok(try await shop.get("/order/\(id)"), "GET /order").json, case .object(var fields) = order,
                    var products = fields["product_ids"]?.arrayValue, let first = products.first?.stringValue
                else { throw Failed(detail: "GET /order/\(id) is not an order") }
                let replacement = outcome.products.first { $0 != first }!
                products[0] = .string(replacement)
                fields["product_ids"] = .array(products)
                order = .object(fields)
                let put = try ok(try await shop.put("/order/\(id)", order), "PUT /order")
                try expect(put.json == .bool(true), "PUT /order answered \(put)")
                let now = try ok(try await shop.get("/order/\(id)"), "GET /order").json?["product_ids"]?.arrayValue?.first?.stringValue
                try expect(now == replacement, "GET /order/\(id) shows product \(now ?? "none"), expected \(replacement)")
                return "GET /order/<id> shows the new product"
            })
        else { return finish(outcome, started) }

        guard
            await step(6, "delete the third order", {
                let id = outcome.orders[2]
                let deleted = try ok(try await shop.delete("/order/\(id)"), "DELETE /order")
                try expect(deleted.json == .bool(true), "DELETE /order answered \(deleted)")
                let now = try ok(try await shop.get("/order/\(id)"), "GET /order")
                try expect(now.json == .null, "GET /order/\(id) answered \(now), expected null")
                outcome.deletedOrder = id
                return "GET /order/<id> -> null"
            })
        else { return finish(outcome, started) }

        guard
            await step(7, "delete the third customer", {
                let id = outcome.customers[2]
                let deleted = try ok(try await shop.delete("/customer/\(id)"), "DELETE /customer")
                try expect(deleted.json == .bool(true), "DELETE /customer answered \(deleted)")
                let now = try ok(try await shop.get("/customer/\(id)"), "GET /customer")
                try expect(now.json == .null, "GET /customer/\(id) answered \(now), expected null")
                outcome.deletedCustomer = id
                return "GET /customer/<id> -> null"
            })
        else { return finish(outcome, started) }

        guard
            await step(8, "bill the first order (POST /billing)", {
                let ids = try ok(try await shop.post("/billing", ["order_id": .string(outcome.orders[0])]), "POST /billing").ids
                try expect(ids.count == 1, "POST /billing answered \(ids.count) ids")
                outcome.billings = ids
                return "-> [\(ids[0].prefix(8))...]"
            })
        else { return finish(outcome, started) }

        _ = await step(9, "unbilled orders (GET /orders/unbilled)", {
            let n = try await count("/orders/unbilled")
            try expect(n == unbilledBefore + 8, "GET /orders/unbilled has \(n), expected \(unbilledBefore + 8)")
            return unbilledBefore == 0 ? "-> 8" : "-> \(n) (8 new)"
        })
        return finish(outcome, started)
    }

    private func finish(_ outcome: Outcome, _ started: ContinuousClock.Instant) -> Outcome {
        var o = outcome
        o.duration = ContinuousClock.now - started
        return o
    }
}
