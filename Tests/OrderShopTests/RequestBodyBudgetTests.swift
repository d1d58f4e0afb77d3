import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import OrderShop
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

/// ``RequestBodyBudget``: a process holds a bounded number of request-body bytes at once, counted
/// as they arrive; a request past it is answered 503 "not applied", and the bytes come back when
/// a request ends. (64 concurrent 4-MiB bodies took a gateway to 344 MB before.)
@Suite struct RequestBodyBudgetTests {
    /// Requests held in their route until the test lets them go.
    final class Held: Sendable {
        let entered = Atomic<Int>(0)
        let open = Atomic<Bool>(false)

        func hold() async throws {
            entered.add(1, ordering: .relaxed)
            while !open.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(5)) }
        }
    }

    @Test func reservationsAreBoundedAndReturned() {
        let budget = RequestBodyBudget(limit: 10)
        #expect(budget.reserve(6))
        #expect(!budget.reserve(5))
        #expect(budget.inUse == 6)
        #expect(budget.reserve(4))
        budget.release(6)
        #expect(budget.reserve(5) && budget.inUse == 9)
    }

    @Test func aBodyPastTheBudgetIs503AndItsBytesComeBack() async throws {
        let budget = RequestBodyBudget(limit: 2_000)
        let held = Held()
        let router = Router(context: ShopRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.add(middleware: RequestBodyBudget.Middleware(budget: budget))
        router.post("/hold") { request, _ in
            let count = try await request.bodyBytes().count
            try await held.hold()
            return JSONResponse.bytes(Array("\(count)".utf8))
        }
        router.get("/free") { _, _ in JSONResponse.null }
        let body = ByteBuffer(repeating: UInt8(ascii: "x"), count: 1_000)
        try await Application(router: router, logger: testLogger).test(.router) { client in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await client.execute(uri: "/hold", method: .post, headers: [.contentLength: "1000"], body: body) { response in
                            #expect(String(buffer: response.body) == "1000")
                            return response.status.code
                        }
                    }
                }
                #expect(await eventually { held.entered.load(ordering: .relaxed) == 2 })
                #expect(budget.inUse == 2_000)
                // A third body does not fit: refused, its route never past the read.
                try await client.execute(uri: "/hold", method: .post, headers: [.contentLength: "1000"], body: body) { response in
                    #expect(response.status == .serviceUnavailable)
                    let text = String(buffer: response.body)
                    #expect(text.contains(#""field":"body""#) && text.contains(#""outcome":"not applied""#) && text.contains("retry"), "\(text)")
                }
                #expect(held.entered.load(ordering: .relaxed) == 2)
                // A request without a body takes nothing.
                try await client.execute(uri: "/free", method: .get) { #expect($0.status == .ok) }
                held.open.store(true, ordering: .releasing)
                for try await status in group { #expect(status == 200) }
            }
            #expect(budget.inUse == 0)
            // The bytes came back: the next one is taken.
            try await client.execute(uri: "/hold", method: .post, headers: [.contentLength: "1000"], body: body) { #expect($0.status == .ok) }
            #expect(budget.inUse == 0)
        }
    }

    /// A review: with the declared Content-Length reserved up front, eight connections that
    /// sent a head of 4 MiB and no body held the whole budget until the body deadline (30 s),
    /// and every POST of the process was refused. Bytes count as they arrive now: a service
    /// with nine such heads open still creates.
    @Test func headsWithoutTheirBodiesHoldNothing() async throws {
        try await withServedCustomer { listening, _ in
            var idle: [Int32] = []
            for _ in 0..<9 {
                let fd = try connectLoopback(port: listening)
                let head = Array("POST /customer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(maxBodySize)\r\n\r\n{".utf8)
                #expect(send(fd, head, head.count, Int32(MSG_NOSIGNAL)) == head.count)
                idle.append(fd)
            }
            try await Task.sleep(for: .milliseconds(300))
            let client = ShopClient(baseURL: "http://127.0.0.1:\(listening)", client: HTTPClient.shared)
            #expect(try await client.post("/customer", ["name": "Ada", "email": "ada@shop.test"]).status == 200)
            for fd in idle { close(fd) }
        }
    }
}
