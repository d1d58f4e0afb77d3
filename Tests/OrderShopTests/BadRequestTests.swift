import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import LocalRedis
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// Errors are JSON with the right status on every command route, and a bad request never takes
    /// a service down.
    @Suite struct BadRequestTests {
        struct Route: Sendable, CustomStringConvertible {
            let type: EntityType
            let path: String
            let valid: JSONValue
            let required: [String]
            var description: String { path }
        }

        /// Every command route with a valid body built from live entities.
        func routes(_ shop: TestShop) async throws -> [Route] {
            let g = shop.gateway
            let customer = try #require(try await g.post("/customer", ["name": "C", "email": "c@shop.test"]).ids.first)
            let product = try #require(try await g.post("/product", ["name": "P", "price": 5]).ids.first)
            let product2 = try #require(try await g.post("/product", ["name": "Q", "price": 6]).ids.first)
            _ = try await g.post("/inventory", ["product_id": .string(product), "amount": 1000])
            let order = try #require(try await g.post("/order", ["product_ids": [.string(product)], "customer_id": .string(customer)]).ids.first)
            let order2 = try #require(try await g.post("/order", ["product_ids": [.string(product)], "customer_id": .string(customer)]).ids.first)
            _ = order2
            let bodies: [(EntityType, JSONValue, [String])] = [
                (.customer, ["name": "D", "email": "d@shop.test"], ["name", "email"]),
                (.product, ["name": "R", "price": 7], ["name", "price"]),
                (.inventory, ["product_id": .string(product2), "amount": 3], ["product_id", "amount"]),
                (.order, ["product_ids": [.string(product)], "customer_id": .string(customer)], ["product_ids", "customer_id"]),
                (.billing, ["order_id": .string(order)], ["order_id"]),
            ]
            return bodies.flatMap { type, body, required in
                EntityRoutes(type).create.map { Route(type: type, path: $0.description, valid: body, required: required) }
            }
        }

        func expectError(_ reply: ShopClient.Reply, _ status: Int, field: String? = nil, _ what: String) {
            #expect(reply.status == status, "\(what): \(reply)")
            #expect(reply.isJSON, "\(what): not a JSON body: \(reply)")
            #expect(reply.errorMessage?.isEmpty == false, "\(what): no error message: \(reply)")
            if let field { #expect(reply.errorField == field, "\(what): \(reply)") }
        }

        @Test func badBodiesOnEveryCommandRoute() async throws {
            try await withShop(workers: []) { shop in
                let g = shop.gateway
                let routes = try await routes(shop)
                #expect(routes.count == 9)  // customer(s), product(s), inventory, order(s), billing(s)
                for route in routes {
                    for raw in ["{", "", "[]", "42", "\"text\"", "{\"name\": }", "[1, 2]"] {
                        expectError(try await g.send(.POST, route.path, body: Array(raw.utf8)), 400, "POST \(route) \(raw)")
                    }
                    guard case .object(let valid) = route.valid else { continue }
                    // A field the entity does not have is refused, named, not dropped: it was
                    // answered 200 and never stored. In a batch nothing is created.
                    var extra = valid
                    extra["phone"] = "+49 30 1234"
                    expectError(try await g.post(route.path, .object(extra)), 400, field: "phone", "POST \(route) with an unknown field")
                    let countBefore = try await g.count("/\(route.type.plural)")
                    let extraInBatch = try await g.post(route.path, [route.valid, .object(extra)])
                    expectError(extraInBatch, 400, field: "phone", "POST \(route) batch with an unknown field")
                    #expect(extraInBatch.errorMessage?.contains("item 1") == true, "\(extraInBatch)")
                    #expect(try await g.count("/\(route.type.plural)") == countBefore)
                    // `field` is the key as sent (JSON escapes it), so a client can match it.
                    var odd = valid
                    odd["a\\b\n"] = 1
                    expectError(try await g.post(route.path, .object(odd)), 400, field: "a\\b\n", "POST \(route) with an odd unknown field")
                    for field in route.required {
                        var missing = valid
                        missing[field] = nil
                        expectError(try await g.post(route.path, .object(missing)), 400, field: field, "POST \(route) without \(field)")
                        var wrong = valid
                        wrong[field] = .bool(true)
                        expectError(try await g.post(route.path, .object(wrong)), 400, field: field, "POST \(route) with \(field): true")
                        // In a batch, the position of the bad object is named, and nothing of the batch is created.
                        let before = try await g.count("/\(route.type.plural)")
                        let batch = try await g.post(route.path, [route.valid, .object(missing)])
                        expectError(batch, 400, field: field, "POST \(route) batch")
                        #expect(batch.errorMessage?.contains("item 1") == true, "\(batch)")
                        #expect(try await g.count("/\(route.type.plural)") == before)
                    }
                }

                // References and uniqueness.
                expectError(try await g.post("/inventory", ["product_id": "nope", "amount": 1]), 400, field: "product_id", "inventory of unknown product")
                expectError(try await g.post("/order", ["product_ids": ["x"], "customer_id": "nope"]), 400, field: "customer_id", "order of unknown customer")
                expectError(try await g.post("/billing", ["order_id": "nope"]), 400, field: "order_id", "billing of unknown order")
                let product = try #require(try await g.get("/inventory").json?.arrayValue?.first?["product_id"]?.stringValue)
                expectError(try await g.post("/inventory", ["product_id": .string(product), "amount": 1]), 409, field: "product_id", "second stock record")
                let order = try #require(try await g.get("/orders").json?.arrayValue?.first?["id"]?.stringValue)
                _ = try await g.post("/billing", ["order_id": .string(order)])
                expectError(try await g.post("/billing", ["order_id": .string(order)]), 409, field: "order_id", "second billing")
                expectError(try await g.post("/inventory", ["product_id": .string(product), "amount": -1]), 400, field: "amount", "negative stock")
                expectError(try await g.post("/product", ["name": "X", "price": -1]), 400, field: "price", "negative price")
                expectError(try await g.post("/customer", ["name": "X", "email": "no address"]), 400, field: "email", "bad e-mail")

                // PUT and DELETE: bad bodies 400, unknown ids 404.
                for type in EntityType.allCases {
                    let live = try #require(try await g.get("/\(type.plural)").json?.arrayValue?.first?["id"]?.stringValue, "\(type)")
                    for raw in ["{", "", "[]", "{}"] {
                        expectError(try await g.send(.PUT, "/\(type)/\(live)", body: Array(raw.utf8)), 400, "PUT \(type) \(raw)")
                    }
                    let valid = try #require(routes.first { $0.type == type }?.valid)
                    expectError(try await g.put("/\(type)/no-such-id", valid), 404, "PUT unknown \(type)")
                    expectError(try await g.delete("/\(type)/no-such-id"), 404, "DELETE unknown \(type)")
                    expectError(try await g.put("/\(type)/\(live)", valid.merging(["id": "another-id"])), 400, field: "id", "PUT \(type) other id")
                    expectError(try await g.put("/\(type)/\(live)", valid.merging(["id": .null])), 400, field: "id", "PUT \(type) null id")
                    let before = try await g.get("/\(type)/\(live)").json
                    let unknown = try await g.put("/\(type)/\(live)", valid.merging(["id": .string(live), "Email": "x@y.z"]))
                    expectError(unknown, 400, field: "Email", "PUT \(type) with an unknown field")
                    let article = [EntityType.order, .inventory].contains(type) ? "an" : "a"
                    #expect(unknown.errorMessage?.contains("\(article) \(type) has the fields \(type == .customer ? "id, name, email" : "id")") == true, "\(unknown)")
                    #expect(try await g.get("/\(type)/\(live)").json == before, "PUT \(type) refused, yet changed it")
                }

                // Too large, unknown routes, wrong methods: JSON too.
                expectError(try await g.send(.POST, "/customers", body: Array(repeating: UInt8(ascii: " "), count: 5 << 20)), 413, field: "body", "huge body")
                let longID = try await g.delete("/customer/" + String(repeating: "x", count: FieldLimits.id + 1))
                expectError(longID, 400, field: "id", "long id")
                #expect(longID.errorMessage?.contains("\(FieldLimits.id + 1) bytes, at most \(FieldLimits.id)") == true, "\(longID)")
                // A GET of one the same (it answered `null` with 200: trial H).
                expectError(try await g.get("/customer/" + String(repeating: "x", count: FieldLimits.id + 1)), 400, field: "id", "GET long id")
                expectError(try await g.get("/no/such/route"), 404, "unknown route")
                let patch = try await g.send(.PATCH, "/customer/x", body: nil)
                #expect(patch.status == 405 && patch.isJSON, "PATCH: \(patch)")

                // Every service still serves.
                for service in ServiceName.allCases {
                    #expect(try await shop.client(service).get("/healthz").status == 200, "\(service)")
                }
                #expect(try await g.post("/customers", [["name": "Z", "email": "z@shop.test"]]).status == 200)
            }
        }

        /// An owner that cannot be reached: 503 with a JSON body (the gateway keeps answering queries).
        @Test func ownerUnreachableIs503() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger)
                // Nothing listens on these ports.
                let refusing = try RefusingPorts()
                let addresses = ServiceAddresses.loopback(ports: refusing.ports)
                let httpClient = makeHTTPClient()
                let router = buildGatewayRouter(context: context, httpClient: httpClient, options: GatewayOptions(addresses: addresses))
                let app = Application(router: router, logger: testLogger)
                try await app.test(.router) { client in
                    for (method, path) in [(HTTPRequest.Method.post, "/customers"), (.put, "/product/x"), (.delete, "/order/x"), (.post, "/billing")] {
                        try await client.execute(uri: path, method: method, headers: [.contentType: "application/json"], body: ByteBuffer(string: #"{"name":"a"}"#)) { response in
                            #expect(response.status == .serviceUnavailable, "\(method) \(path)")
                            #expect(response.headers[.retryAfter] == "1", "\(method) \(path)")
                            #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                            let body = try JSONCoding.decode(JSONValue.self, from: response.body.readableBytesView)
                            #expect(body["error"]?.stringValue?.contains("unreachable") == true)
                        }
                    }
                    try await client.execute(uri: "/customers", method: .get) { response in
                        #expect(response.status == .ok)
                        #expect(String(buffer: response.body) == "[]")
                    }
                }
                try await httpClient.shutdown()
                await pool.shutdown()
                withExtendedLifetime(refusing) {}
            }
        }

        /// Redis unreachable: 503 on /healthz and on queries, JSON, no crash; /livez (the liveness
        /// probe's, which must not restart a process for Redis's absence) 200.
        @Test func redisUnreachableIs503() async throws {
            let port = try LocalRedisServer.freePort()
            var configuration = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port))
            configuration.reconnect.retryWindow = .zero
            let pool = try RedisConnectionPool(configuration: configuration)
            let context = try ShopContext(pool: pool, logger: testLogger)
            for service in ServiceName.allCases {
                let app = Application(router: buildRouter(for: service, context: context, httpClient: HTTPClient.shared), logger: testLogger)
                try await app.test(.router) { client in
                    try await client.execute(uri: "/healthz", method: .get) { response in
                        #expect(response.status == .serviceUnavailable, "\(service)")
                        // The body every process answers, workers included (``Health``).
                        #expect(
                            String(buffer: response.body) == #"{"redis":"unreachable (connectionRefused)","service":"\#(service.rawValue)","status":"unavailable"}"#,
                            "\(service)")
                    }
                    try await client.execute(uri: "/livez", method: .get) { response in
                        #expect(response.status == .ok, "\(service)")
                        #expect(String(buffer: response.body) == #"{"service":"\#(service.rawValue)","status":"ok"}"#, "\(service)")
                    }
                    try await client.execute(uri: "/livez", method: .post) { #expect($0.status == .methodNotAllowed, "\(service)") }
                    if let type = service.entityType {
                        try await client.execute(uri: "/\(type.plural)", method: .get) { response in
                            #expect(response.status == .serviceUnavailable, "\(service)")
                            #expect(response.headers[.retryAfter] == "1", "\(service)")
                            #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                        }
                    }
                }
            }
            await pool.shutdown()
        }

        /// Redis up but the service's layout check not passed yet: /healthz 503, naming it, so
        /// that nothing (a readiness probe, the demo) takes the service for ready; 200 once it has.
        @Test func healthWaitsForTheLayoutCheck() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger, checksLayout: true)
                let app = Application(router: buildRouter(for: .customer, context: context, httpClient: HTTPClient.shared), logger: testLogger)
                try await app.test(.router) { client in
                    try await client.execute(uri: "/healthz", method: .get) { response in
                        #expect(response.status == .serviceUnavailable)
                        #expect(String(buffer: response.body).contains("is not checked yet"), "\(String(buffer: response.body))")
                    }
                    context.health.layout.arrive()
                    try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
                }
                await pool.shutdown()
            }
        }

        /// A method a path does not serve: 405 with `Allow` and a JSON body, at the gateway, at
        /// each owner and at msg (a path that does not exist stays 404); the methods it serves
        /// still reach their routes (503 here: no Redis), HEAD where GET is, without a body.
        @Test func wrongMethodIs405AndHeadLikeGet() async throws {
            var configuration = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: try LocalRedisServer.freePort()))
            configuration.reconnect.retryWindow = .zero
            let pool = try RedisConnectionPool(configuration: configuration)
            let context = try ShopContext(pool: pool, logger: testLogger)
            for service in ServiceName.allCases {
                let app = Application(router: buildRouter(for: service, context: context, httpClient: HTTPClient.shared), logger: testLogger)
                let types = service == .gateway ? EntityType.allCases : [service.entityType].compactMap { $0 }
                var refused: [(HTTPRequest.Method, String, String)] = [(.post, "/healthz", "GET, HEAD, OPTIONS")]
                for type in types {
                    refused += [
                        (.patch, "/\(type)/x", "GET, HEAD, PUT, DELETE, OPTIONS"), (.post, "/\(type)/x", "GET, HEAD, PUT, DELETE, OPTIONS"),
                        (.delete, "/\(type.plural)", "GET, HEAD, POST, OPTIONS"), (.patch, "/\(type.plural)", "GET, HEAD, POST, OPTIONS"),
                    ]
                    if type != .inventory { refused.append((.get, "/\(type)", "POST, OPTIONS")) }
                    if type == .order { refused.append((.post, "/orders/unbilled", "GET, HEAD, OPTIONS")) }
                }
                if service == .gateway { refused.append((.put, "/report", "GET, HEAD, OPTIONS")) }
                refused.append((.trace, "/healthz", "GET, HEAD, OPTIONS"))
                if service == .msg { refused += [(.get, "/email", "POST, OPTIONS"), (.put, "/email", "POST, OPTIONS")] }
                let cases = refused
                try await app.test(.router) { client in
                    for (method, path, allow) in cases {
                        try await client.execute(uri: path, method: method) { response in
                            #expect(response.status == .methodNotAllowed, "\(service): \(method) \(path)")
                            #expect(response.headers[.allow] == allow, "\(service): \(method) \(path)")
                            let body = try? JSONCoding.decode(JSONValue.self, from: response.body.readableBytesView)
                            #expect(body?["error"]?.stringValue?.hasPrefix("\(method) is not allowed on \(path)") == true, "\(service): \(method) \(path)")
                        }
                    }
                    try await client.execute(uri: "/no/such/route", method: .patch) { response in
                        #expect(response.status == .notFound, "\(service)")
                    }
                    // OPTIONS: 204 with what the path allows (it was 404 "no route").
                    for (_, path, allow) in cases {
                        try await client.execute(uri: path, method: .options) { response in
                            #expect(response.status == .noContent && response.headers[.allow] == allow, "\(service): OPTIONS \(path)")
                        }
                    }
                    // HEAD where GET is: its status and headers, no body (an error's JSON included).
                    try await client.execute(uri: "/healthz", method: .head) { response in
                        #expect(response.status == .serviceUnavailable, "\(service): HEAD /healthz")
                        #expect(response.body.readableBytes == 0, "\(service): HEAD /healthz")
                    }
                    try await client.execute(uri: "/no/such/route", method: .head) { response in
                        #expect(response.status == .notFound && response.body.readableBytes == 0, "\(service): HEAD /no/such/route")
                    }
                    for type in types {
                        try await client.execute(uri: "/\(type.plural)", method: .get) { response in
                            #expect(response.status == .serviceUnavailable, "\(service): GET /\(type.plural)")
                        }
                        try await client.execute(uri: "/\(type)/x", method: .head) { response in
                            #expect(response.status == .serviceUnavailable && response.body.readableBytes == 0, "\(service): HEAD /\(type)/x")
                        }
                        // At an owner (the gateway would forward it, to nothing here).
                        if service != .gateway {
                            try await client.execute(uri: "/\(type)/x", method: .delete) { response in
                                #expect(response.status == .serviceUnavailable, "\(service): DELETE /\(type)/x")
                            }
                        }
                    }
                }
            }
            await pool.shutdown()
        }
    }
}

extension JSONValue {
    func merging(_ other: [String: JSONValue]) -> JSONValue {
        guard case .object(var o) = self else { return self }
        for (k, v) in other { o[k] = v }
        return .object(o)
    }
}
