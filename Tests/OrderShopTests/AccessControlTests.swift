import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// Issue 13, Why 4: who may call the admin and write routes.
    @Suite struct AccessControlTests {
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
                        let reply = try await client.send(.POST, "/customer", body: body, headers: [("Content-Type", type)])
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
                // A charset other than UTF-8 is refused naming Content-Type (it passed, and the body
                // was then refused 400 "not valid UTF-8"); UTF-8, in any spelling, is fine.
                for client in [shop.gateway, shop.client(.customer)] {
                    for type in [
                        "application/json; charset=latin1", #"application/json;charset="ISO-8859-1""#, "application/json; charset=utf-8; charset=latin1",
                        "application/json; charset=",
                    ] {
                        let reply = try await client.send(.POST, "/customer", body: body, headers: [("Content-Type", type)])
                        expectError(reply, 415, field: "Content-Type", "\(client.baseURL) \(type)")
                    }
                }
                // Content-Type twice, also when the first has parameters (that one passed).
                for client in [shop.gateway, shop.client(.customer)] {
                    let reply = try await client.send(
                        .POST, "/customer", body: body, headers: [("Content-Type", "application/json; charset=utf-8"), ("Content-Type", "application/json")])
                    expectError(reply, 415, field: "Content-Type", "\(client.baseURL) twice")
                }
                for type in ["application/json; charset=utf-8", #"application/json; Charset="UTF-8""#, "application/json;charset=utf8"] {
                    let json = Array(#"{"name": "Ok", "email": "ok-\#(type.count)@shop.test"}"#.utf8)
                    #expect(try await shop.gateway.send(.POST, "/customer", body: json, headers: [("Content-Type", type)]).status == 200, "\(type)")
                }
                // JSON with a charset is fine.
                #expect(try await shop.gateway.post("/customer", ["name": "Ok", "email": "ok@shop.test"]).status == 200)
            }
        }

        /// A trial: a gzip body got 400 "malformed JSON at byte 0", and a plain body labelled `br` was stored.
        @Test func compressedBodiesAreRefusedNamingTheirCoding() async throws {
            try await withShop(workers: []) { shop in
                let json = Array(#"{"name": "Packed", "email": "packed@shop.test"}"#.utf8)
                let gzipped: [UInt8] = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03] + json
                var acceptEncoding: [String?] = []
                func post(_ url: String, coding: String, body: [UInt8]) async throws -> ShopClient.Reply {
                    var request = HTTPClientRequest(url: url)
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.headers.add(name: "Content-Encoding", value: coding)
                    request.body = .bytes(ByteBuffer(bytes: body))
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                    let bytes = try await response.body.collect(upTo: 1 << 20)
                    acceptEncoding.append(response.headers.first(name: "Accept-Encoding"))
                    return ShopClient.Reply(status: Int(response.status.code), body: Array(bytes.readableBytesView), contentType: response.headers.first(name: "Content-Type"))
                }
                for url in [shop.gateway.baseURL + "/customer", shop.client(.customer).baseURL + "/customer", shop.client(.msg).baseURL + "/email"] {
                    for (coding, body) in [("gzip", gzipped), ("br", json), ("deflate, gzip", gzipped)] {
                        expectError(try await post(url, coding: coding, body: body), 415, field: "Content-Encoding", "\(url) \(coding)")
                    }
                }
                #expect(try await shop.gateway.count("/customers") == 0)
                // RFC 9110 12.5.3: the 415 says which codings are taken.
                #expect(acceptEncoding.allSatisfy { $0 == "identity" }, "\(acceptEncoding)")
                // No coding at all, said so.
                #expect(try await post(shop.gateway.baseURL + "/customer", coding: " Identity ", body: json).status == 200)
            }
        }
    }
}
