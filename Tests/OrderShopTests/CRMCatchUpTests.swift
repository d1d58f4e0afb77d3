import Foundation
@testable import OrderShop
import RedisClient
import StreamWorker
import TestSupport
import Testing

extension ShopIntegration {
    /// The article's promise, which the original breaks: CRM may be down during a whole scenario,
    /// and once it is back it sends every mail it missed, each exactly once.
    @Suite struct CRMCatchUpTests {
        @Test func crmDownDuringScenarioThenBack() async throws {
            try await withShop { shop in
                let crm = try #require(shop.stack.control.services["crm"])

                // Run 1 with everything up; wait until its mails are out.
                let run1 = await Scenario(shop: shop.gateway).run()
                try #require(run1.passed, "\(run1.steps.filter { !$0.passed }.map(\.detail))")
                let expected1 = try await expectedMails(shop.pool)
                #expect(await eventually(timeout: .seconds(60)) { Set(((try? await shop.mailKeys()) ?? [:]).keys).isSuperset(of: expected1.keys) })

                // CRM down (through the gateway's admin route, as the demo does).
                let stopped = try await shop.admin("/admin/workers/crm/stop")
                #expect(stopped.status == 200)
                #expect(stopped.json?["crm"]?.stringValue == "stopped")
                #expect(!crm.isRunning)

                // Run 2 while CRM is down: everything still passes.
                let run2 = await Scenario(shop: shop.gateway).run()
                try #require(run2.passed, "\(run2.steps.filter { !$0.passed }.map(\.detail))")
                let all = try await expectedMails(shop.pool)
                let new = all.filter { expected1[$0.key] == nil }
                let crmMissed = new.filter { $0.value.group == "crm" }
                let billing2 = new.filter { $0.value.group == "billing" }
                #expect(crmMissed.count == 10 + 1 + 10)
                #expect(billing2.count == 10 + 1)
                // Billing is up and sends its mails; CRM sends none while it is down.
                #expect(await eventually(timeout: .seconds(60)) { Set(((try? await shop.mailKeys()) ?? [:]).keys).isSuperset(of: billing2.keys) })
                #expect(try await shop.mailKeys().keys.filter { crmMissed[$0] != nil }.isEmpty)

                // CRM back: every missed mail arrives.
                let started = try await shop.admin("/admin/workers/crm/start")
                #expect(started.json?["crm"]?.stringValue == "running")
                #expect(await eventually(timeout: .seconds(60)) { Set(((try? await shop.mailKeys()) ?? [:]).keys).isSuperset(of: all.keys) })

                // Exactly once: no key twice, and nothing that was not owed.
                let sent = try await shop.mailKeys()
                #expect(sent.count == all.count)
                #expect(sent.filter { $0.value != 1 }.isEmpty)
                let byKind = Dictionary(grouping: try await shop.mails.all(), by: { $0.kind })
                #expect(byKind[.welcome]?.count == 20)
                #expect(byKind[.goodbye]?.count == 2)
                #expect(byKind[.thankYou]?.count == 20)
                #expect(byKind[.pleasePay]?.count == 20)
                #expect(byKind[.paymentReceived]?.count == 2)

                // The customer deleted in run 2 was deleted before CRM handled their order: the
                // thank-you mail went to their last known address (the read model's tombstone).
                let deleted = try #require(run2.deletedCustomer)
                let email = try #require(try await shop.readModel.lookup(Customer.self, id: deleted)).entity.email
                let ordersOfDeleted = try await shop.store.replay(.order).states.values.filter {
                    (try? JSONCoding.decode(Order.self, from: $0.json))?.customerID == deleted
                }.count
                let thankYous = try await shop.mails.all().filter { $0.to == email && $0.kind == .thankYou }.count
                #expect(thankYous == ordersOfDeleted)

                // Nothing was dead-lettered.
                for stream in [EntityType.customer.stream(.created), EntityType.customer.stream(.deleted), EntityType.order.stream(.created)] {
                    #expect(try await shop.pool.send(["XLEN", RedisArgument(StreamKeys.deadLetter(stream: stream, group: "crm"))]).int == 0)
                }
            }
        }
    }
}
