import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LocalRedis
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// `ordershop up`'s calls between its services without HTTP (``InProcessServices``): the
    /// owners' and msg's routers are called directly, with what the HTTP call would carry.
    @Suite struct InProcessCallTests {
        /// Every address refuses connections: only an in-process call can reach the owner.
        @Test func theGatewayForwardsToAnOwnerInThisProcess() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger)
                let refusing = try RefusingPorts()
                let services = InProcessServices()
                let directory = ServiceDirectory(ServiceAddresses.loopback(ports: refusing.ports), inProcess: services)
                for owner in [ServiceName.customer, .product] {
                    services.register(owner, buildRouter(for: owner, context: context, httpClient: HTTPClient.shared).buildResponder(), logger: testLogger)
                }
                let httpClient = makeHTTPClient()
                let gateway = buildGatewayRouter(context: context, httpClient: httpClient, options: GatewayOptions(directory: directory))
                try await Application(router: gateway, logger: testLogger).test(.router) { client in
                    // A create with its key: the owner's answer, the replay flag passed on.
                    let body = ByteBuffer(string: #"{"name":"Ada","email":"ada@shop.test"}"#)
                    var headers: HTTPFields = [.contentType: "application/json", .idempotencyKey: "k-1", .traceID: "trace-in-process"]
                    var id = ""
                    try await client.execute(uri: "/customers", method: .post, headers: headers, body: body) { response in
                        #expect(response.status == .ok)
                        #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                        id = try JSONCoding.decode(JSONValue.self, from: response.body.readableBytesView).arrayValue?.first?.stringValue ?? ""
                        #expect(response.headers[.idempotentReplayed] == nil)
                    }
                    #expect(!id.isEmpty)
                    try await client.execute(uri: "/customers", method: .post, headers: headers, body: body) { response in
                        #expect(response.status == .ok)
                        #expect(response.headers[.idempotentReplayed] == "true")
                        let ids = try JSONCoding.decode(JSONValue.self, from: response.body.readableBytesView)
                        #expect(ids.arrayValue?.first?.stringValue == id)
                    }
                    // The trace id reached the event, as over HTTP.
                    let created = try await pool.send(XRANGE(RedisArgument(EntityType.customer.stream(.created))))
                    #expect(created.count == 1)
                    #expect(created.first?.string("trace_id") == "trace-in-process")
                    // The owner's errors come back as they are: 400 naming the field.
                    headers[.idempotencyKey] = nil
                    try await client.execute(uri: "/customers", method: .post, headers: headers, body: ByteBuffer(string: #"{"name":"NoMail"}"#)) {
                        response in
                        #expect(response.status == .badRequest)
                        let error = try JSONCoding.decode(JSONValue.self, from: response.body.readableBytesView)
                        #expect(error["field"]?.stringValue == "email")
                    }
                    try await client.execute(uri: "/customer/\(id)", method: .delete) { response in #expect(response.status == .ok) }
                    try await client.execute(uri: "/customer/\(id)", method: .delete) { response in #expect(response.status == .notFound) }
                    // The planted defect (chaos: gateway-drops-idempotency-key) holds in-process too.
                    let dropping = buildGatewayRouter(
                        context: context, httpClient: httpClient,
                        options: {
                            var o = GatewayOptions(directory: directory)
                            o.plantedDropsIdempotencyKeys = true
                            return o
                        }())
                    try await Application(router: dropping, logger: testLogger).test(.router) { dropped in
                        let keyed: HTTPFields = [.contentType: "application/json", .idempotencyKey: "k-2"]
                        let product = ByteBuffer(string: #"{"name":"Pen","price":3}"#)
                        for _ in 0..<2 {
                            try await dropped.execute(uri: "/products", method: .post, headers: keyed, body: product) { response in
                                #expect(response.status == .ok)
                                #expect(response.headers[.idempotentReplayed] == nil)
                            }
                        }
                    }
                    #expect(try await pool.send(XLEN(RedisArgument(EntityType.product.stream(.created)))) == 2)
                    // An owner that does not run here is called over HTTP: unreachable, 503.
                    try await client.execute(uri: "/order/x", method: .delete) { response in
                        #expect(response.status == .serviceUnavailable)
                    }
                }
                try await httpClient.shutdown()
                await pool.shutdown()
                withExtendedLifetime(refusing) {}
            }
        }

        /// A worker's mail reaches msg in this process: sent once per key, rejected as over HTTP.
        /// An owner's 503 (its Redis away) reaches the client with its `Retry-After`, whether
        /// the gateway called the owner in this process or over HTTP.
        @Test func anOwnersRetryAfterIsPassedOn() async throws {
            var configuration = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: try LocalRedisServer.freePort()))
            configuration.reconnect.retryWindow = .zero
            let pool = try RedisConnectionPool(configuration: configuration)
            let context = try ShopContext(pool: pool, logger: testLogger)
            let httpClient = makeHTTPClient()
            let refusing = try RefusingPorts()
            let services = InProcessServices()
            services.register(.customer, buildRouter(for: .customer, context: context, httpClient: HTTPClient.shared).buildResponder(), logger: testLogger)
            let owner = buildRouter(for: .customer, context: context, httpClient: HTTPClient.shared)
            try await Application(router: owner, logger: testLogger).test(.live) { ownerClient in
                let port = try #require(ownerClient.port)
                let directories = [
                    "in-process": ServiceDirectory(ServiceAddresses.loopback(ports: refusing.ports), inProcess: services),
                    "http": ServiceDirectory(ServiceAddresses.loopback(ports: refusing.ports.merging([.customer: port]) { $1 })),
                ]
                for (way, directory) in directories {
                    let gateway = buildGatewayRouter(context: context, httpClient: httpClient, options: GatewayOptions(directory: directory))
                    try await Application(router: gateway, logger: testLogger).test(.router) { client in
                        let body = ByteBuffer(string: #"{"name":"Ada","email":"ada@shop.test"}"#)
                        try await client.execute(uri: "/customers", method: .post, headers: [.contentType: "application/json"], body: body) { response in
                            #expect(response.status == .serviceUnavailable, "\(way)")
                            #expect(response.headers[.retryAfter] == "1", "\(way)")
                            let error = try JSONCoding.decode(JSONValue.self, from: response.body.readableBytesView)
                            #expect(error["error"]?.stringValue?.contains("unreachable") == false, "\(way): \(error)")
                        }
                    }
                }
            }
            try await httpClient.shutdown()
            await pool.shutdown()
            withExtendedLifetime(refusing) {}
        }

        @Test func mailsReachMsgInThisProcess() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger)
                let refusing = try RefusingPorts()
                let services = InProcessServices()
                services.register(.msg, buildRouter(for: .msg, context: context, httpClient: HTTPClient.shared).buildResponder(), logger: testLogger)
                let mail = MailClient(
                    directory: ServiceDirectory(ServiceAddresses.loopback(ports: refusing.ports), inProcess: services), client: HTTPClient.shared)
                let first = try await mail.send(to: "a@shop.test", msg: "hello", idempotencyKey: "crm:event-1")
                let again = try await mail.send(to: "a@shop.test", msg: "hello", idempotencyKey: "crm:event-1")
                #expect(first.status == "sent")
                #expect(again.status == "duplicate")
                #expect(again.id == first.id)
                #expect(try await MailLog(pool: pool).count() == 1)
                // msg's 400 is a rejection (dead-lettered), not an outage (retried), as over HTTP.
                do {
                    try await mail.send(to: "", msg: "x", idempotencyKey: "k")
                    Issue.record("a mail without an address was sent")
                } catch MailClient.Failure.rejected(let status, _) {
                    #expect(status == 400)
                }
                // Without msg in this process the mail goes over HTTP, to a port that refuses it.
                let httpClient = makeHTTPClient()
                let overHTTP = MailClient(directory: ServiceDirectory(ServiceAddresses.loopback(ports: refusing.ports)), client: httpClient)
                do {
                    _ = try await overHTTP.send(to: "a@shop.test", msg: "hi", idempotencyKey: "crm:event-2")
                    Issue.record("a mail was sent to a port that refuses connections")
                } catch MailClient.Failure.unavailable(let reason) {
                    // In words (NIO's own text: "connection reset (error set): Connection refused) (errno: 111)").
                    #expect(reason == "Connection refused (errno 111)", "\(reason)")
                }
                try await httpClient.shutdown()
                await pool.shutdown()
                withExtendedLifetime(refusing) {}
            }
        }

        /// The whole shop with in-process calls (what `ordershop up` runs): a customer created
        /// through the gateway gets its welcome mail from the CRM worker.
        @Test func theShopRunsWithInProcessCalls() async throws {
            try await withShop(workers: [.crm], callsInProcess: true) { shop in
                // Every service is called in-process (the tests above show a registered one is
                // never called over HTTP).
                let inProcess = try #require(shop.stack.directory.inProcess)
                for service in ServiceName.allCases { #expect(inProcess.runs(service), "\(service)") }
                let reply = try await shop.gateway.post("/customers", ["name": "Grace", "email": "grace@shop.test"])
                #expect(reply.status == 200)
                let id = try #require(reply.ids.first)
                let mailed = await eventually(timeout: .seconds(60)) {
                    (try? await shop.mails.all().contains { $0.to == "grace@shop.test" }) == true
                }
                #expect(mailed)
                #expect(try await shop.gateway.get("/customer/\(id)").status == 200)
            }
        }
    }
}
