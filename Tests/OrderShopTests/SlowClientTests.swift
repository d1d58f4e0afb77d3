import AsyncHTTPClient
import Foundation
import Hummingbird
@testable import OrderShop
import RedisClient
import ServiceLifecycle
import Synchronization
import TestSupport
import WorkerMetricsHTTP
import Testing

extension ShopIntegration {
    /// Issue 13, Why 6: clients that send too slowly are cut off.
    @Suite struct SlowClientTests {
        /// Why 6: 3,000 connections trickling one byte each were held 35 s. A client that never
        /// completes its request head is cut off.
        @Test func aClientTricklingItsHeadIsCutOff() async throws {
            try await withShop(workers: []) { shop in
                let port = try #require(Int(shop.gateway.baseURL.split(separator: ":").last ?? ""))
                let fd = try connectLoopback(port: port)
                defer { close(fd) }
                let head = Array("POST /customer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 200)
                // One byte every 250 ms: 50 s in all, far past any header deadline; the server must close first.
                let closedByServer = try await trickle(head, to: fd, every: .milliseconds(250))
                #expect(closedByServer, "the server kept a connection that trickled its head one byte at a time")
                // And it still serves everyone else.
                #expect(try await shop.gateway.get("/healthz").status == 200)
            }
        }

        /// A body declared past the limit is refused at once (it waited for the body until the
        /// body deadline closed the connection without an answer), and a chunk that is not one
        /// is a 400, not 413 "exceeds".
        @Test func aDeclaredHugeBodyIsRefusedAtOnceAndABadChunkIs400() async throws {
            try await withShop(workers: []) { shop in
                let port = try #require(Int(shop.gateway.baseURL.split(separator: ":").last ?? ""))
                let requests = [
                    ("413", "Content-Length: 99999999\r\n\r\n{}"),
                    ("400", "Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n"),
                ]
                for (status, rest) in requests {
                    // Answered before the body deadline (30 s) would close it unanswered.
                    let text = try await rawExchange(port: port, Array("POST /customers HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n\(rest)".utf8))
                    #expect(text.hasPrefix("HTTP/1.1 \(status)") && text.contains(#""error""#), "\(status): \(text)")
                }
                #expect(try await shop.gateway.count("/customers") == 0)
            }
        }

        /// The body has its own deadline: a complete head followed by a trickled body is cut off too.
        @Test func aClientTricklingItsBodyIsCutOff() async throws {
            try await withServedCustomer(limits: HTTPServerLimits(headerTimeout: .seconds(2), bodyTimeout: .seconds(2), idleTimeout: .seconds(10))) {
                listening, pool in
                let body = Array(#"{"name": "Slow", "email": "slow@shop.test"}"#.utf8)
                let fd = try connectLoopback(port: listening)
                let head = Array("POST /customer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
                #expect(send(fd, head, head.count, Int32(MSG_NOSIGNAL)) == head.count)
                let closedByServer = try await trickle(body, to: fd, every: .milliseconds(400))
                close(fd)
                #expect(closedByServer, "the server kept a connection that trickled its body")
                #expect(try await ReadModel(pool: pool).count(.customer) == 0)

                // A client within the limits is served.
                let client = ShopClient(baseURL: "http://127.0.0.1:\(listening)", client: HTTPClient.shared)
                #expect(try await client.post("/customer", ["name": "Quick", "email": "quick@shop.test"]).status == 200)
            }
        }

        /// A body that stops coming (declared or chunked), or never starts, is answered 408
        /// naming the body at its deadline, and the connection ends: it was closed without an
        /// answer, and the client could not tell that nothing was done.
        @Test func aBodyThatStopsComingIsAnswered408() async throws {
            try await withServedCustomer(limits: HTTPServerLimits(headerTimeout: .seconds(2), bodyTimeout: .seconds(2), idleTimeout: .seconds(10))) {
                listening, pool in
                let body = #"{"name": "Stalled", "email": "stalled@shop.test"}"#
                let half = String(body.prefix(10))
                let declared = "POST /customer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
                let chunked = "POST /customer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                for request in [declared + half, chunked + "a\r\n" + half + "\r\n", declared] {
                    let answer = try await rawExchangeSeeingClose(port: listening, Array(request.utf8), timeout: 10)
                    #expect(answer.answer.hasPrefix("HTTP/1.1 408") && answer.answer.contains(#""field":"body""#), "\(request): \(answer.answer)")
                    #expect(answer.closedByServer)
                }
                // The rest of the body, sent once the 408 has come, completes nothing (a review:
                // within the 2-s grace before the close the route got it whole and made the customer).
                let fd = try connectLoopback(port: listening)
                defer { close(fd) }
                let first = Array((chunked + "a\r\n" + half + "\r\n").utf8)
                #expect(send(fd, first, first.count, Int32(MSG_NOSIGNAL)) == first.count)
                var answer: [UInt8] = []
                let deadline = ContinuousClock.now + .seconds(10)
                while !String(decoding: answer, as: UTF8.self).contains(#""field":"body""#), ContinuousClock.now < deadline {
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                    if n > 0 { answer += buffer[0..<n] } else { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 408"), "\(String(decoding: answer, as: UTF8.self))")
                let late = String(body.dropFirst(10))
                let rest = Array((String(late.utf8.count, radix: 16) + "\r\n" + late + "\r\n0\r\n\r\n").utf8)
                _ = send(fd, rest, rest.count, Int32(MSG_NOSIGNAL))
                try await Task.sleep(for: .seconds(3))
                #expect(try await ReadModel(pool: pool).count(.customer) == 0)
                // A body that arrives whole after a first answered request is served as before.
                let client = ShopClient(baseURL: "http://127.0.0.1:\(listening)", client: HTTPClient.shared)
                #expect(try await client.post("/customer", ["name": "Quick", "email": "quick@shop.test"]).status == 200)
            }
        }
    }
}

/// The customer service on a free loopback port over a fresh redis-server, with `limits`:
/// `body` gets the port and the pool; the service stops gracefully after it.
func withServedCustomer(limits: HTTPServerLimits = .init(), _ body: (Int, RedisConnectionPool) async throws -> Void) async throws {
    try await withRedisServer { server in
        let pool = try server.makePool()
        let context = try ShopContext(pool: pool, logger: testLogger)
        let port = Mutex(0)
        let app = buildApplication(
            for: .customer, host: "127.0.0.1", port: 0, context: context, httpClient: HTTPClient.shared, limits: limits,
            onServerRunning: { p in port.withLock { $0 = p } })
        let group = ServiceGroup(services: [app], logger: testLogger)
        let running = Task { try await group.run() }
        #expect(await eventually(timeout: .seconds(30)) { port.withLock { $0 } != 0 })
        try await body(port.withLock { $0 }, pool)
        await group.triggerGracefulShutdown()
        _ = await running.result
        await pool.shutdown()
    }
}

/// Sends `bytes` one at a time with a pause between them; true when the server closed the
/// connection before all were sent.
func trickle(_ bytes: [UInt8], to fd: Int32, every pause: Duration) async throws -> Bool {
    for byte in bytes {
        var b = byte
        if send(fd, &b, 1, Int32(MSG_NOSIGNAL)) != 1 { return true }
        var probe: UInt8 = 0
        let n = recv(fd, &probe, 1, Int32(MSG_DONTWAIT))
        if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { return true }
        try await Task.sleep(for: pause)
    }
    return false
}

/// The port of a service's loopback URL (`http://127.0.0.1:PORT`).
func loopbackPort(_ url: String) throws -> Int {
    try #require(url.split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) }, "\(url)")
}
