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
    /// A command whose answer was lost or late may have been applied, and the 503 says so
    /// (`"outcome": "may have been applied"`), as an unconfirmed command's does: a client that
    /// retried it blindly could apply it twice. Before, both cases below answered a bare
    /// "unavailable", indistinguishable from a command that certainly did not run.
    @Suite struct UncertainOutcomeTests {
        func body(_ response: TestResponse) throws -> JSONValue {
            try JSONCoding.decode(JSONValue.self, from: response.body.readableBytesView)
        }

        /// Redis frozen (SIGSTOP) after the service connected: the create's script is sent and
        /// its answer never comes in time. It did run: Redis, resumed, holds the customer.
        @Test func aCommandWhoseRedisAnswerIsLateMayHaveBeenApplied() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool {
                    $0.timeouts.command = .milliseconds(500)
                    // No role check before the late command: it would time out on the frozen
                    // server first, and the command, never sent, would be a plain 503.
                    $0.roleCheckInterval = nil
                }
                let context = try ShopContext(pool: pool, logger: testLogger)
                let app = Application(router: buildRouter(for: .customer, context: context, httpClient: HTTPClient.shared), logger: testLogger)
                try await app.test(.router) { client in
                    // A first create loads the script, so that the late one is not refused NOSCRIPT.
                    try await client.execute(
                        uri: "/customers", method: .post, headers: [.contentType: "application/json"],
                        body: ByteBuffer(string: #"{"name": "Early", "email": "early@shop.test"}"#)
                    ) { #expect($0.status == .ok) }
                    server.signal(SIGSTOP)
                    defer { server.signal(SIGCONT) }
                    try await client.execute(
                        uri: "/customers", method: .post, headers: [.contentType: "application/json"],
                        body: ByteBuffer(string: #"{"name": "Late", "email": "late@shop.test"}"#)
                    ) { response in
                        #expect(response.status == .serviceUnavailable)
                        let outcome = try body(response)["outcome"]
                        #expect(outcome?.stringValue == "may have been applied", "\(String(buffer: response.body))")
                    }
                    // A billing's create reads first (does its order exist?): that read timing out
                    // means the write never went out, a plain 503 (the outcome is decided where
                    // the write is sent, not by the request's method).
                    let billing = Application(router: buildRouter(for: .billing, context: context, httpClient: HTTPClient.shared), logger: testLogger)
                    try await billing.test(.router) { billingClient in
                        try await billingClient.execute(
                            uri: "/billings", method: .post, headers: [.contentType: "application/json"],
                            body: ByteBuffer(string: #"{"order_id": "o1"}"#)
                        ) { response in
                            #expect(response.status == .serviceUnavailable)
                            let outcome = try body(response)["outcome"]
                            #expect(outcome == nil, "\(String(buffer: response.body))")
                        }
                    }
                    // A query changes nothing: no outcome to speak of.
                    try await client.execute(uri: "/customers", method: .get) { response in
                        #expect(response.status == .serviceUnavailable)
                        let outcome = try body(response)["outcome"]
                        #expect(outcome == nil)
                    }
                    server.signal(SIGCONT)
                    func names() async throws -> [String] {
                        let listed = try await context.readModel.list(.customer)
                        return try JSONCoding.decode(JSONValue.self, from: listed).arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
                    }
                    #expect(await eventually { try await names() == ["Early", "Late"] }, "the command answered 503 ran after all")
                }
                await pool.shutdown()
            }
        }

        /// An owner that takes the connection and never answers (a listening socket nobody
        /// accepts on): the forward times out after the request went out, so the command may
        /// have been applied. An owner that refuses the connection got nothing: no outcome.
        @Test func aForwardThatTimesOutMayHaveBeenApplied() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger)
                let (silent, silentPort) = try LocalRedisServer.bindLoopbackSocket()
                defer { close(silent) }
                #expect(listen(silent, 16) == 0)
                let refusing = try RefusingPorts()
                var ports = refusing.ports
                ports[.customer] = silentPort
                let httpClient = makeHTTPClient()
                let router = buildGatewayRouter(
                    context: context, httpClient: httpClient,
                    options: GatewayOptions(addresses: .loopback(ports: ports), forwardTimeout: .seconds(1)))
                let app = Application(router: router, logger: testLogger)
                try await app.test(.router) { client in
                    let json: HTTPFields = [.contentType: "application/json"]
                    try await client.execute(uri: "/customers", method: .post, headers: json, body: ByteBuffer(string: #"{"name":"a","email":"a@shop.test"}"#)) { response in
                        #expect(response.status == .serviceUnavailable)
                        let outcome = try body(response)["outcome"]
                        #expect(outcome?.stringValue == "may have been applied", "\(String(buffer: response.body))")
                    }
                    try await client.execute(uri: "/products", method: .post, headers: json, body: ByteBuffer(string: #"{"name":"p","price":1}"#)) { response in
                        #expect(response.status == .serviceUnavailable)
                        let outcome = try body(response)["outcome"]
                        #expect(outcome == nil, "refused: \(String(buffer: response.body))")
                    }
                }
                try await httpClient.shutdown()
                await pool.shutdown()
                withExtendedLifetime(refusing) {}
            }
        }
    }
}
