import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
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
                // The address follows a customer's rule for its e-mail.
                let notAnAddress = try await plain.post("/email", ["to": "bad", "msg": "hi"])
                #expect(notAnAddress.status == 400)
                #expect(notAnAddress.errorField == "to")
                // A field a mail does not have (a `cc` would not be sent) is refused, not dropped.
                let withCC = try await plain.post("/email", ["to": "b@shop.test", "msg": "hi", "cc": "c@shop.test"])
                #expect(withCC.status == 400)
                #expect(withCC.errorField == "cc")
            }
        }

        /// `mail:sent` keeps the mails of the key TTL: a send trims the entries older than that
        /// (whole stream nodes), none younger. It grew by one entry per mail for ever.
        @Test func theRecordKeepsTheMailsOfTheKeyTTL() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger)
                func send(_ router: Router<ShopRequestContext>, keys: Range<Int>) async throws {
                    try await Application(router: router).test(.router) { client in
                        for index in keys {
                            try await client.execute(
                                uri: "/email", method: .post, headers: [.contentType: "application/json", .idempotencyKey: "k\(index)"],
                                body: ByteBuffer(string: #"{"to": "a@shop.test", "msg": "hello"}"#)
                            ) { #expect($0.status == .ok) }
                        }
                    }
                }
                // Within a day's TTL nothing is trimmed.
                try await send(buildMsgRouter(context: context, options: MsgOptions(keyTTL: .seconds(86_400))), keys: 0..<300)
                try await send(buildMsgRouter(context: context, options: MsgOptions(keyTTL: .seconds(86_400))), keys: 300..<301)
                #expect(try await pool.send(XLEN(RedisArgument(MailKeys.sent))) == 301)
                // With a TTL of 1 ms, the next send finds every earlier entry older than it.
                try await Task.sleep(for: .milliseconds(5))
                try await send(buildMsgRouter(context: context, options: MsgOptions(keyTTL: .milliseconds(1))), keys: 301..<302)
                let left = try await pool.send(XRANGE(RedisArgument(MailKeys.sent)))
                #expect(left.count < 200, "\(left.count) entries left")
                #expect(left.last?.string("key") == "k301")

                // A duplicate sets its marker to expire the TTL after the mail's entry, never
                // later (renewed by each duplicate, a marker outlived its trimmed entry).
                let ttl = 3_000
                let router = buildMsgRouter(context: context, options: MsgOptions(keyTTL: .milliseconds(ttl)))
                try await send(router, keys: 400..<401)
                try await Task.sleep(for: .milliseconds(1_000))
                try await send(router, keys: 400..<401)
                let marker = RedisArgument(MailKeys.marker("k400"))
                let remaining = try await pool.send(RawCommand(["PTTL", marker], keys: [marker])).int ?? -1
                #expect(remaining > 0 && remaining <= ttl - 1_000, "\(remaining) ms left")
                await pool.shutdown()
            }
        }

        /// The chaos harness's `msg-forgets-keys` (`MsgOptions.plantedForgetsKeys`) sends a key's
        /// mail again, which its checker must then find twice in `mail:sent`; msg without it
        /// answers "duplicate" and records the mail once.
        @Test(arguments: [false, true])
        func aKeyAskedAgainIsSentAgainOnlyWithThePlantedBug(planted: Bool) async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let context = try ShopContext(pool: pool, logger: testLogger)
                let router = buildMsgRouter(context: context, options: MsgOptions(plantedForgetsKeys: planted))
                let statuses = try await Application(router: router).test(.router) { client in
                    var statuses: [String] = []
                    for _ in 0..<2 {
                        let response = try await client.execute(
                            uri: "/email", method: .post, headers: [.contentType: "application/json", .idempotencyKey: "crm:1-0"],
                            body: ByteBuffer(string: #"{"to": "a@shop.test", "msg": "hello"}"#))
                        #expect(response.status == .ok)
                        statuses.append(try MailReceipt(json: Array(buffer: response.body)).status)
                    }
                    return statuses
                }
                let keys = try await pool.send(XRANGE(RedisArgument(MailKeys.sent))).map { $0.string("key") }
                #expect(statuses == (planted ? ["sent", "sent"] : ["sent", "duplicate"]))
                #expect(keys == (planted ? ["crm:1-0", "crm:1-0"] : ["crm:1-0"]))
                await pool.shutdown()
            }
        }
    }
}
