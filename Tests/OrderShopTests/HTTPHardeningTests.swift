import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import LocalRedis
import Logging
@testable import OrderShop
import RedisClient
import Synchronization
import TestSupport
import Testing

extension ShopIntegration {
    /// Issue 13, Why 4 to 6: the HTTP surface against hostile or careless clients.
    @Suite struct HTTPHardeningTests {
        func expectError(_ reply: ShopClient.Reply, _ status: Int, field: String, _ what: String) {
            #expect(reply.status == status, "\(what): \(reply)")
            #expect(reply.isJSON, "\(what): not a JSON body: \(reply)")
            #expect(reply.errorField == field, "\(what): \(reply)")
        }

        /// Why 4: `POST /admin/workers/crm/stop` answered 200 with no credentials, also from a foreign origin.
        @Test func adminRoutesNeedTheTokenAndRefuseForeignOrigins() async throws {
            try await withShop { shop in
                let g = shop.gateway
                let path = "/admin/workers/crm/stop"
                expectError(try await g.send(.POST, path, body: nil), 401, field: "Authorization", "no token")
                expectError(try await g.send(.POST, path, body: nil, headers: [("Authorization", "Bearer wrong")]), 401, field: "Authorization", "wrong token")
                let good = ("Authorization", "Bearer test-admin-token")
                expectError(
                    try await g.send(.POST, path, body: nil, headers: [good, ("Origin", "http://evil.example")]), 403, field: "Origin", "foreign origin")
                expectError(
                    try await g.send(.POST, path, body: nil, headers: [good, ("Sec-Fetch-Site", "cross-site")]), 403, field: "Origin", "cross-site fetch")
                expectError(
                    try await g.send(.POST, path, body: nil, headers: [good, ("Content-Type", "text/plain"), ("Origin", "http://evil.example")]),
                    403, field: "Origin", "cross-site form")
                #expect(try await g.get("/admin/workers").status == 401)
                // CRM kept running through all of that.
                #expect(shop.stack.control.services["crm"]?.isRunning == true)
                let stopped = try await g.send(.POST, path, body: nil, headers: [good])
                #expect(stopped.status == 200, "\(stopped)")
                #expect(try await g.send(.POST, "/admin/workers/crm/start", body: nil, headers: [good]).status == 200)
            }
        }

        /// Why 4: without a token configured, the admin routes are not served at all.
        @Test func adminRoutesAreOffWithoutAToken() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger)
                let control = WorkerControl([])
                let router = buildGatewayRouter(context: context, httpClient: HTTPClient.shared, options: GatewayOptions(admin: control))
                try await Application(router: router, logger: testLogger).test(.router) { client in
                    for (method, path) in [(HTTPRequest.Method.get, "/admin/workers"), (.post, "/admin/workers/crm/stop")] {
                        try await client.execute(uri: path, method: method, headers: [.authorization: "Bearer anything"]) { response in
                            #expect([403, 404].contains(response.status.code), "\(method) \(path): \(response.status)")
                        }
                    }
                }
                await pool.shutdown()
            }
        }

        /// Why 4: command routes accepted `text/plain` bodies as JSON (a cross-site form can send those).
        @Test func writeRoutesAcceptOnlyJSON() async throws {
            try await withShop(workers: []) { shop in
                let body = Array(#"{"name": "Form", "email": "form@shop.test"}"#.utf8)
                for client in [shop.gateway, shop.client(.customer)] {
                    for type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
                        var request = HTTPClientRequest(url: client.baseURL + "/customer")
                        request.method = .POST
                        request.headers.add(name: "Content-Type", value: type)
                        request.body = .bytes(ByteBuffer(bytes: body))
                        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                        let bytes = try await response.body.collect(upTo: 1 << 20)
                        let reply = ShopClient.Reply(status: Int(response.status.code), body: Array(bytes.readableBytesView), contentType: response.headers.first(name: "Content-Type"))
                        expectError(reply, 415, field: "Content-Type", "\(client.baseURL) \(type)")
                    }
                    var none = HTTPClientRequest(url: client.baseURL + "/customer")
                    none.method = .POST
                    none.body = .bytes(ByteBuffer(bytes: body))
                    #expect(try await HTTPClient.shared.execute(none, timeout: .seconds(30)).status.code == 415)
                }
                #expect(try await shop.gateway.count("/customers") == 0)
                // msg's /email too.
                var mail = HTTPClientRequest(url: shop.client(.msg).baseURL + "/email")
                mail.method = .POST
                mail.headers.add(name: "Content-Type", value: "text/plain")
                mail.body = .bytes(ByteBuffer(string: #"{"to": "a@b.c", "msg": "hi"}"#))
                #expect(try await HTTPClient.shared.execute(mail, timeout: .seconds(30)).status.code == 415)
                // JSON with a charset is fine.
                #expect(try await shop.gateway.post("/customer", ["name": "Ok", "email": "ok@shop.test"]).status == 200)
            }
        }

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
                expectError(try await g.send(.POST, "/customer", body: Array("{".utf8)), 400, field: "body", "truncated")
                expectError(try await g.send(.POST, "/customers", body: Array(#"[{"name": "A", "email": "a@b.c", "name": "B"}]"#.utf8)), 400, field: "name", "duplicate in batch")
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

        /// Why 6: 3,000 connections trickling one byte each were held 35 s. A client that never
        /// completes its request head is cut off.
        @Test func aClientTricklingItsHeadIsCutOff() async throws {
            try await withShop(workers: []) { shop in
                let port = try #require(Int(shop.gateway.baseURL.split(separator: ":").last ?? ""))
                let fd = try connectLoopback(port: port)
                defer { close(fd) }
                let head = Array("POST /customer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 200)
                // One byte every 250 ms: 50 s in all, far past any header deadline; the server must close first.
                var closedByServer = false
                for byte in head {
                    var b = byte
                    if send(fd, &b, 1, Int32(MSG_NOSIGNAL)) != 1 {
                        closedByServer = true
                        break
                    }
                    var probe: UInt8 = 0
                    let n = recv(fd, &probe, 1, Int32(MSG_DONTWAIT))
                    if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                        closedByServer = true
                        break
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
                #expect(closedByServer, "the server kept a connection that trickled its head one byte at a time")
                // And it still serves everyone else.
                #expect(try await shop.gateway.get("/healthz").status == 200)
            }
        }

        /// Why 6: NUL, BEL and ESC from names were written raw into log lines.
        @Test func controlCharactersAreEscapedInLogs() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let lines = LogCapture()
                var logger = Logger(label: "capture") { _ in lines }
                logger.logLevel = .info
                let context = try ShopContext(pool: pool, logger: logger)
                let app = Application(router: buildMsgRouter(context: context), logger: logger)
                try await app.test(.router) { client in
                    let body = JSONCoding.encode(["to": "a\u{0}@b.c", "msg": "Dear \u{7}\u{1b}[31mEvil\u{1b}[0m\nFORGED LINE"] as JSONValue)
                    try await client.execute(uri: "/email", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(bytes: body)) {
                        #expect($0.status == .ok)
                    }
                }
                let logged = lines.messages
                #expect(logged.contains { $0.contains("Evil") }, "\(logged)")
                for line in logged {
                    #expect(!line.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "raw control character in \(line.debugDescription)")
                }
                await pool.shutdown()
            }
        }
    }
}

/// A blocking TCP connection to 127.0.0.1 (for clients that misbehave on purpose).
func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        close(fd)
        throw TestFailure("connect to port \(port): \(errno)")
    }
    return fd
}

/// A log handler that keeps every message (for tests of what is logged).
final class LogCapture: LogHandler, @unchecked Sendable {
    private let lock = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var messages: [String] { lock.withLock { $0 } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lock.withLock { $0.append(event.message.description) }
    }
}
