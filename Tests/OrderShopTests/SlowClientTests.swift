import AsyncHTTPClient
import Foundation
import Hummingbird
@testable import OrderShop
import RedisClient
import ServiceLifecycle
import Synchronization
import TestSupport
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
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger)
                let port = Mutex(0)
                let app = buildApplication(
                    for: .customer, host: "127.0.0.1", port: 0, context: context, httpClient: HTTPClient.shared,
                    limits: HTTPServerLimits(headerTimeout: .seconds(2), bodyTimeout: .seconds(2), idleTimeout: .seconds(10)),
                    onServerRunning: { p in port.withLock { $0 = p } })
                let group = ServiceGroup(services: [app], logger: testLogger)
                let running = Task { try await group.run() }
                #expect(await eventually(timeout: .seconds(30)) { port.withLock { $0 } != 0 })
                let listening = port.withLock { $0 }

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
                await group.triggerGracefulShutdown()
                _ = await running.result
                await pool.shutdown()
            }
        }
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

/// Sends `request` to 127.0.0.1:`port` over a raw socket and reads until the server closes (or
/// `timeout` passes without a byte): what the server answered, as text.
func rawExchange(port: Int, _ request: [UInt8], timeout seconds: Int = 20) async throws -> String {
    try await rawExchangeSeeingClose(port: port, request, timeout: seconds).answer
}

/// ``rawExchange(port:_:timeout:)``, and whether the server closed the connection (false: the
/// reading stopped at the timeout). On a thread of its own: a blocking `recv` on the cooperative
/// pool held one of its two threads (2 cores) while the in-process server needed it to answer,
/// and the whole suite's servers timed out.
func rawExchangeSeeingClose(port: Int, _ request: [UInt8], timeout seconds: Int = 20) async throws -> (answer: String, closedByServer: Bool) {
    let fd = try connectLoopback(port: port)
    return await withCheckedContinuation { (done: CheckedContinuation<(answer: String, closedByServer: Bool), Never>) in
        let thread = Thread {
            defer { close(fd) }
            var timeout = timeval(tv_sec: seconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else {
                return done.resume(returning: ("send failed: errno \(errno)", false))
            }
            var answer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            var n = 0
            repeat {
                n = recv(fd, &chunk, chunk.count, 0)
                if n > 0 { answer += chunk[0..<n] }
            } while n > 0
            done.resume(returning: (answer.isEmpty ? "nothing (errno \(errno))" : String(decoding: answer, as: UTF8.self), n == 0))
        }
        thread.start()
    }
}

/// The port of a service's loopback URL (`http://127.0.0.1:PORT`).
func loopbackPort(_ url: String) throws -> Int {
    try #require(url.split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) }, "\(url)")
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
