import Foundation
@testable import OrderShop
import RedisClient
import StreamWorker
import TestSupport
import Testing

extension ShopIntegration {
    /// Issue 13, "a one-second msg outage dead-letters every mail": the workers' retries were
    /// spent in about 1.5 s (100 ms doubling, five deliveries), so a rolling restart of msg sent
    /// every mail of its window to the dead letters. msg unreachable is now "unavailable", not
    /// the event's fault: the subscription backs off as a whole and nothing is dead-lettered.
    @Suite struct MsgOutageTests {
        @Test func mailsOutliveAnOutageOfMsg() async throws {
            try await withShop(workers: [.crm]) { shop in
                let msgURL = shop.stack.addresses.url(.msg)
                let msgPort = try #require(Int(msgURL.split(separator: ":").last ?? ""))
                // msg "stopped": its address now refuses connections at once.
                let refusing = try RefusingPorts()
                shop.stack.directory.listening(.msg, port: try #require(refusing.ports[.msg]))

                var ids: [String] = []
                for n in 0..<5 {
                    ids += try await shop.gateway.post("/customer", ["name": "Outage \(n)", "email": "outage\(n)@shop.test"]).ids
                }
                #expect(ids.count == 5)
                // Longer than the old retry budget (~1.5 s) by far, and several breaker probes.
                try await Task.sleep(for: .seconds(4))
                let letters = DeadLetters(client: shop.pool, stream: EntityType.customer.stream(.created), group: "crm")
                #expect(try await letters.list().isEmpty, "mails dead-lettered during a 4 s msg outage")

                // msg "back": every welcome mail is sent, once, and still nothing is dead-lettered.
                shop.stack.directory.listening(.msg, port: msgPort)
                let sent = await eventually(timeout: .seconds(60)) {
                    let to = Set(try await shop.mails.all().filter { $0.kind == .welcome }.map(\.to))
                    return (0..<5).allSatisfy { to.contains("outage\($0)@shop.test") }
                }
                #expect(sent, "not every welcome mail was sent after msg came back")
                #expect(try await letters.list().isEmpty)
                let keys = try await shop.mailKeys()
                #expect(keys.values.allSatisfy { $0 == 1 }, "\(keys)")
            }
        }
    }
}
