import Foundation
@testable import OrderShop
import TestSupport
import Testing

extension ShopIntegration {
    /// HTTP/1.x's rules for keeping a connection (``PersistentConnectionRules``) and the answer to
    /// what is not HTTP/1.x at all (``MalformedRequestAnswer``). ApacheBench
    /// (HTTP/1.0) waited for each response's end until its timeout, as the gateway answered
    /// HTTP/1.0 requests as HTTP/1.1 and kept their connections.
    @Suite struct PersistentConnectionTests {
        /// One shop for the checks below (a shop per check made the whole suite's load peak higher).
        @Test func connectionRulesAndMalformedRequests() async throws {
            try await withShop(workers: []) { shop in
                try await http10ConnectionsEndUnlessKeptAlive(shop)
                try await http11ConnectionCloseInAnyCase(shop)
                try await whatTheParserRefusesIsAnsweredInJSON(shop)
                try await anAnswerBeforeTheBodyIsNotLostToAReset(shop)
                try await garbageBehindAPipelinedRequestWaitsForItsAnswer(shop)
                try await expectContinueIsAnsweredBeforeTheBody(shop)
                try await ambiguousHostsAndCodingsAreRefusedFromTheHead(shop)
            }
        }

        /// RFC 9112: an HTTP/1.1 request without a Host, or any naming two, is 400 naming Host; a
        /// coding before chunked is 501 (NIO took `gzip, chunked` as chunked and the route got
        /// the gzip bytes: 400 "malformed JSON"), chunked not last or twice, and any
        /// Transfer-Encoding in HTTP/1.0, 400. Each refused before its body is read, nothing created, the connection ended;
        /// one pipelined behind a request is answered after it. (Both were answered before.)
        func ambiguousHostsAndCodingsAreRefusedFromTheHead(_ shop: TestShop) async throws {
            let before = try #require(try await shop.gateway.count("/customers"))
            let json = #"{"name": "Framed", "email": "framed@shop.test"}"#
            let chunked = String(json.utf8.count, radix: 16) + "\r\n" + json + "\r\n0\r\n\r\n"
            let cases: [(head: String, body: String, status: String, field: String)] = [
                ("POST /customer HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n", json, "HTTP/1.1 400", "Host"),
                ("POST /customer HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n", json, "HTTP/1.1 400", "Host"),
                ("GET /customers HTTP/1.0\r\nHost: a\r\nHost: b\r\n", "", "HTTP/1.0 400", "Host"),
                ("POST /customer HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n", chunked, "HTTP/1.1 501", "Transfer-Encoding"),
                ("POST /customer HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", chunked, "HTTP/1.1 501", "Transfer-Encoding"),
                ("POST /customer HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n", chunked, "HTTP/1.0 400", "Transfer-Encoding"),
                ("GET /customers HTTP/1.1\r\nHost: a, b\r\n", "", "HTTP/1.1 400", "Host"),
                ("POST /customer HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked, chunked\r\n", chunked, "HTTP/1.1 400", "request"),  // NIO's parser refuses it first
                ("POST /customer HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n", json, "HTTP/1.1 400", "Transfer-Encoding"),
            ]
            for service in [ServiceName.gateway, .customer] {
                let port = try loopbackPort(shop.stack.addresses.url(service))
                for c in cases {
                    let answer = try await rawExchangeSeeingClose(port: port, Array((c.head + "\r\n" + c.body).utf8), timeout: 10)
                    #expect(answer.answer.hasPrefix(c.status) && answer.answer.contains(#""field":"\#(c.field)""#), "\(service) \(c.head): \(answer.answer)")
                    #expect(answer.closedByServer, "\(service) \(c.head): the connection was kept")
                }
                // Behind a pipelined request: its answer first, then the refusal.
                let behind = try await rawExchangeSeeingClose(
                    port: port, Array("GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\nGET /customers HTTP/1.1\r\n\r\n".utf8), timeout: 10)
                #expect(behind.answer.hasPrefix("HTTP/1.1 200") && behind.answer.contains("HTTP/1.1 400"), "\(service): \(behind.answer)")
                // Chunked alone, and one Host, are taken.
                let plain = try await rawExchangeSeeingClose(
                    port: port,
                    Array("POST /customer HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n\(chunked)".utf8),
                    timeout: 10)
                #expect(plain.answer.hasPrefix("HTTP/1.1 200"), "\(service): \(plain.answer)")
            }
            #expect(try await shop.gateway.count("/customers") == before + 2)
        }

        /// A trial: `Expect: 100-continue` was never answered, so curl waited 1 s before each
        /// such body and a client that waits for the 100 got nothing. HTTP/1.0 gets no 100.
        func expectContinueIsAnsweredBeforeTheBody(_ shop: TestShop) async throws {
            let body = Array(#"{"name": "Patient", "email": "patient@shop.test"}"#.utf8)
            for service in [ServiceName.gateway, .customer] {
                let port = try loopbackPort(shop.stack.addresses.url(service))
                for (version, expectation) in [("1.1", "100-continue"), ("1.1", "100-Continue"), ("1.0", "100-continue")] {
                    let head = "POST /customer HTTP/\(version)\r\nHost: shop\r\nConnection: close\r\nContent-Type: application/json\r\n"
                        + "Content-Length: \(body.count)\r\nExpect: \(expectation)\r\n\r\n"
                    let answer = try await rawExchangeExpectingContinue(port: port, head: Array(head.utf8), body: body, interimTimeout: version == "1.1" ? 10 : 1)
                    if version == "1.1" {
                        #expect(answer.beforeBody == "HTTP/1.1 100 Continue\r\n\r\n", "\(service) \(expectation): \(answer.beforeBody)")
                    } else {
                        #expect(answer.beforeBody.isEmpty, "\(service) HTTP/1.0: \(answer.beforeBody)")
                    }
                    #expect(answer.afterBody.hasPrefix("HTTP/\(version) 200"), "\(service) HTTP/\(version): \(answer.afterBody.prefix(300))")
                }
            }
            #expect(try await shop.gateway.count("/customers") == 6)
            let port = try loopbackPort(shop.gateway.baseURL)
            // A declared body the route refuses from its head (413) gets no 100: the client,
            // waiting, never uploads it (it got a 100, uploaded 4 MiB, then the 413).
            let tooLarge = "POST /customer HTTP/1.1\r\nHost: shop\r\nConnection: close\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(5 << 20)\r\nExpect: 100-continue\r\n\r\n"
            let refused = try await rawExchangeExpectingContinue(port: port, head: Array(tooLarge.utf8), body: [], interimTimeout: 10)
            #expect(refused.beforeBody.hasPrefix("HTTP/1.1 413") && !refused.beforeBody.contains("100 Continue"), "\(refused.beforeBody.prefix(300))")
            // Pipelined behind a request still being answered: its 100 after that answer (it
            // never came, and a client waiting for it waited until the body deadline).
            let pipelined = "GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\nPOST /customer HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\nExpect: 100-continue\r\n\r\n"
            let behind = try await rawExchangeExpectingContinue(port: port, head: Array(pipelined.utf8), body: body, interimTimeout: 10)
            #expect(behind.beforeBody.hasPrefix("HTTP/1.1 200") && behind.beforeBody.hasSuffix("}HTTP/1.1 100 Continue\r\n\r\n"), "\(behind.beforeBody)")
            #expect(behind.afterBody.hasPrefix("HTTP/1.1 200"), "\(behind.afterBody.prefix(300))")
            #expect(try await shop.gateway.count("/customers") == 7)
        }

        /// An HTTP/1.0 request ends its connection after the response unless it asks for
        /// `keep-alive`; one that asks keeps it (a second request on it is answered) and is told
        /// so. On the gateway and on an owner service (each server of the shop has the rules).
        func http10ConnectionsEndUnlessKeptAlive(_ shop: TestShop) async throws {
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

        /// A request the HTTP parser refuses is answered in JSON naming the part at fault, and its
        /// connection closed (``MalformedRequestAnswer``; it was an empty 400); headers past the
        /// limit are 431. The shop goes on serving.
        func whatTheParserRefusesIsAnsweredInJSON(_ shop: TestShop) async throws {
            let port = try loopbackPort(shop.gateway.baseURL)
            let asked: [(String, String, String)] = [
                ("400", "GET /customers HTTP/1.1\r\nHost: shop\r\nBad Header: y\r\n\r\n", "headers"),
                ("400", "POST /customers HTTP/1.1\r\nHost: shop\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "headers"),
                ("400", "BREW /customers HTTP/1.1\r\nHost: shop\r\n\r\n", "method"),
                ("431", "GET /customers HTTP/1.1\r\nHost: shop\r\nX-Big: \(String(repeating: "a", count: 90_000))\r\n\r\n", "headers"),
            ]
            for (status, request, field) in asked {
                let answer = try await rawExchangeSeeingClose(port: port, Array(request.utf8), timeout: 10)
                let text = answer.answer
                #expect(text.hasPrefix("HTTP/1.1 \(status)") && text.contains("application/json"), "\(request.prefix(60)): \(text)")
                #expect(text.contains(#""field":"\#(field)""#) && text.contains("nothing done"), "\(request.prefix(60)): \(text)")
                #expect(answer.closedByServer, "\(request.prefix(60)): the connection was kept")
            }
            #expect(try await shop.gateway.get("/healthz").status == 200)
            #expect(try await shop.gateway.count("/customers") == 0)
        }

        /// A request answered before its body was read (413 for a declared 10 MB) that does not
        /// keep its connection: the client gets the answer and then the end of the stream, not a
        /// reset (a full close with the body unread in the socket makes the kernel send one, and
        /// the client may lose the answer).
        func anAnswerBeforeTheBodyIsNotLostToAReset(_ shop: TestShop) async throws {
            let port = try loopbackPort(shop.gateway.baseURL)
            for version in ["1.0", "1.1"] {
                let head = "POST /customers HTTP/\(version)\r\nHost: shop\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
                let answer = try await rawExchangeSeeingClose(port: port, Array(head.utf8) + Array(repeating: UInt8(ascii: "a"), count: 256 << 10), timeout: 10)
                #expect(answer.answer.hasPrefix("HTTP/\(version) 413") && answer.answer.contains(#""error""#), "HTTP/\(version): \(answer.answer.prefix(300))")
                #expect(answer.closedByServer && !answer.answer.contains("[connection reset"), "HTTP/\(version): \(answer.answer.suffix(120))")
            }
        }

        /// Garbage pipelined behind a valid request is answered after that request's answer,
        /// which it does not cut into.
        func garbageBehindAPipelinedRequestWaitsForItsAnswer(_ shop: TestShop) async throws {
            let port = try loopbackPort(shop.gateway.baseURL)
            let answer = try await rawExchangeSeeingClose(port: port, Array("GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\nGET /x y z\r\n\r\n".utf8), timeout: 10)
            let text = answer.answer
            let ok = try #require(text.range(of: #"{"redis":"ok","service":"gateway","status":"ok"}"#), "the first answer is not whole: \(text)")
            #expect(text.hasPrefix("HTTP/1.1 200"), "\(text)")
            #expect(text[ok.upperBound...].hasPrefix("HTTP/1.1 400"), "\(text)")
            #expect(answer.closedByServer, "\(text)")
        }

        /// `Connection: Close` (any case) ends an HTTP/1.1 connection too; without it the
        /// connection stays open.
        func http11ConnectionCloseInAnyCase(_ shop: TestShop) async throws {
            let port = try loopbackPort(shop.gateway.baseURL)
            let closing = try await rawExchangeSeeingClose(port: port, Array("GET /customers HTTP/1.1\r\nHost: shop\r\nConnection: Close\r\n\r\n".utf8), timeout: 10)
            #expect(closing.closedByServer && closing.answer.hasPrefix("HTTP/1.1 200"), "\(closing.answer)")
            let kept = try await rawExchangeSeeingClose(port: port, Array("GET /customers HTTP/1.1\r\nHost: shop\r\n\r\n".utf8), timeout: 2)
            #expect(!kept.closedByServer && kept.answer.hasPrefix("HTTP/1.1 200"), "\(kept.answer)")
        }
    }
}
