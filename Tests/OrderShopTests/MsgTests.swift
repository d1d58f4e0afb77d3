import AsyncHTTPClient
import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// msg sends each idempotency key once and records every mail in `mail:sent`.
    @Suite struct MsgTests {
        @Test func eachKeyIsSentOnceEvenConcurrently() async throws {
            try await withShop(workers: []) { shop in
                let mail = MailClient(baseURL: shop.stack.addresses.url(.msg), client: HTTPClient.shared)
                let receipts = try await withThrowingTaskGroup(of: MailReceipt.self) { group in
                    for _ in 0..<20 { group.addTask { try await mail.send(to: "a@shop.test", msg: "hello", idempotencyKey: "crm:event-1") } }
                    return try await group.reduce(into: [MailReceipt]()) { $0.append($1) }
                }
                #expect(receipts.filter { $0.status == "sent" }.count == 1)
                #expect(receipts.filter { $0.status == "duplicate" }.count == 19)
                #expect(Set(receipts.map(\.id)).count == 1)
                let entries = try await shop.pool.send(XRANGE(RedisArgument(MailKeys.sent)))
                #expect(entries.count == 1)
                #expect(entries.first?.string("key") == "crm:event-1")
                #expect(entries.first?.string("to") == "a@shop.test")
                #expect(entries.first?.string("msg") == "hello")

                // Another key is another mail; no key at all is always a new mail.
                #expect(try await mail.send(to: "a@shop.test", msg: "hello", idempotencyKey: "crm:event-2").status == "sent")
                let plain = ShopClient(baseURL: shop.stack.addresses.url(.msg), client: HTTPClient.shared)
                #expect(try await plain.post("/email", ["to": "b@shop.test", "msg": "hi"]).status == 200)
                #expect(try await plain.post("/email", ["to": "b@shop.test", "msg": "hi"]).status == 200)
                #expect(try await shop.mails.count() == 4)

                // A bad request is refused (the workers dead-letter such a mail instead of retrying it).
                await #expect(throws: MailClient.Failure.self) { try await mail.send(to: "", msg: "x", idempotencyKey: "k") }
                let missing = try await plain.post("/email", ["to": "b@shop.test"])
                #expect(missing.status == 400)
                #expect(missing.errorField == "msg")
            }
        }
    }
}
