import AsyncHTTPClient
@testable import OrderShop
import StreamWorker
import TestSupport
import Testing

extension ShopIntegration {
    /// `ordershop demo` against a live shop: passes, and fails loudly where it must.
    @Suite struct DemoTests {
        @Test func demoPassesAgainstTheShop() async throws {
            try await withShop { shop in
                let demo = Demo(options: Demo.Options(gatewayURL: shop.stack.gatewayURL, redis: shop.redis.configuration, adminToken: TestShop.adminToken), log: { _ in })
                let report = try await demo.run(httpClient: HTTPClient.shared)
                #expect(report.passed, "\(report.failures)")
                #expect(report.runs.count == 2)
                #expect(report.mailsByKind == [.welcome: 20, .goodbye: 2, .thankYou: 20, .pleasePay: 20, .paymentReceived: 2])
                // CRM is running again afterwards.
                #expect(shop.stack.control.services["crm"]?.isRunning == true)
            }
        }

        /// A CRM worker run beside the shop mails while the demo has the shop's CRM stopped: the
        /// demo fails, names that consumer, and starts the shop's CRM again (it left it stopped).
        @Test func aFailureWhileCRMIsStoppedStartsItAgain() async throws {
            try await withShop { shop in
                let mail = MailClient(baseURL: shop.stack.addresses.url(.msg), client: .shared)
                let stray = StreamWorker(
                    client: shop.pool, configuration: WorkerConfiguration(block: .milliseconds(500), inspectionInterval: .milliseconds(200)),
                    subscriptions: WorkerName.crm.subscriptions(readModel: ReadModel(pool: shop.pool), mail: mail), logger: testLogger)
                let running = Task { try await stray.run() }
                let demo = Demo(options: Demo.Options(gatewayURL: shop.stack.gatewayURL, redis: shop.redis.configuration, adminToken: TestShop.adminToken), log: { _ in })
                let report = try await demo.run(httpClient: HTTPClient.shared)
                stray.drain()
                try await running.value
                #expect(!report.passed)
                let failure = report.failures.first ?? ""
                #expect(failure.contains("mails while it was stopped") && failure.contains(stray.consumerName), "\(report.failures)")
                #expect(shop.stack.control.services["crm"]?.isRunning == true)
            }
        }

        @Test func demoWithoutWorkerControlFailsUnlessToldToSkipTheRestart() async throws {
            try await withShop { shop in
                // The owner services answer the same queries but have no /admin routes.
                let options = Demo.Options(gatewayURL: shop.stack.gatewayURL, redis: shop.redis.configuration, adminToken: TestShop.adminToken)
                var noAdmin = options
                noAdmin.gatewayURL = shop.stack.addresses.url(.customer)
                let failed = try await Demo(options: noAdmin, log: { _ in }).run(httpClient: HTTPClient.shared)
                #expect(!failed.passed)
                #expect(failed.failures.first?.contains("no worker control") == true)

                var once = options
                once.crmRestart = false
                let report = try await Demo(options: once, log: { _ in }).run(httpClient: HTTPClient.shared)
                #expect(report.passed, "\(report.failures)")
                #expect(report.runs.count == 1)
                #expect(report.mailsByKind[.welcome] == 10)
            }
        }
    }
}
