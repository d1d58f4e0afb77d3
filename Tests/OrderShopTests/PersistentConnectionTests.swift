import Foundation
@testable import OrderShop
import TestSupport
import Testing

extension ShopIntegration {
    /// HTTP/1.x's rules for keeping a connection (``PersistentConnectionRules``): ApacheBench
    /// (HTTP/1.0) waited for each response's end until its timeout, as the gateway answered
    /// HTTP/1.0 requests as HTTP/1.1 and kept their connections.
    @Suite struct PersistentConnectionTests {
        /// An HTTP/1.0 request ends its connection after the response unless it asks for
        /// `keep-alive`; one that asks keeps it (a second request on it is answered) and is told
        /// so. On the gateway and on an owner service (each server of the shop has the rules).
        @Test func http10ConnectionsEndUnlessKeptAlive() async throws {
            try await withShop(workers: []) { shop in
                for service in [ServiceName.gateway, .customer] {
                    let port = try loopbackPort(shop.stack.addresses.url(service))
                    let plain = try await rawExchangeSeeingClose(port: port, Array("GET /customers HTTP/1.0\r\n\r\n".utf8), timeout: 10)
                    #expect(plain.closedByServer, "\(service) kept an HTTP/1.0 connection: \(plain.answer)")
                    #expect(plain.answer.hasPrefix("HTTP/1.0 200"), "\(service): \(plain.answer)")
                    #expect(plain.answer.lowercased().contains("connection: close"), "\(service): \(plain.answer)")

                    let kept = try await rawExchangeSeeingClose(
                        port: port, Array("GET /customers HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n".utf8), timeout: 10)
                    let answers = kept.answer.components(separatedBy: "HTTP/1.0 200")
                    #expect(answers.count == 3, "\(service): two answers expected: \(kept.answer)")
                    #expect(answers.dropFirst().first?.lowercased().contains("connection: keep-alive") == true, "\(service): \(kept.answer)")
                    #expect(kept.answer.contains(#""status":"ok""#), "\(service): the second request was not answered: \(kept.answer)")
                    #expect(kept.closedByServer, "\(service) kept the connection after the request that did not ask to keep it")
                }
            }
        }

        /// `Connection: Close` (any case) ends an HTTP/1.1 connection too; without it the
        /// connection stays open.
        @Test func http11ConnectionCloseInAnyCase() async throws {
            try await withShop(workers: []) { shop in
                let port = try loopbackPort(shop.gateway.baseURL)
                let closing = try await rawExchangeSeeingClose(port: port, Array("GET /customers HTTP/1.1\r\nHost: shop\r\nConnection: Close\r\n\r\n".utf8), timeout: 10)
                #expect(closing.closedByServer && closing.answer.hasPrefix("HTTP/1.1 200"), "\(closing.answer)")
                let kept = try await rawExchangeSeeingClose(port: port, Array("GET /customers HTTP/1.1\r\nHost: shop\r\n\r\n".utf8), timeout: 2)
                #expect(!kept.closedByServer && kept.answer.hasPrefix("HTTP/1.1 200"), "\(kept.answer)")
            }
        }
    }
}
