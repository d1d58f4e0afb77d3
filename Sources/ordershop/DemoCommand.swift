import ArgumentParser
import Foundation
import OrderShop

/// `ordershop demo`: the original client's scenario, then CRM down, the scenario again, CRM back
/// up, and every missed mail arrives exactly once. Exits 1 when any step fails.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the reference scenario against a running shop (`ordershop up`) and prove CRM catches up exactly once.",
        discussion: "Needs the gateway's /admin/workers routes (served by `ordershop up`) and the shop's Redis (--url, $REDIS_URL, else 127.0.0.1:6379) to count mails in mail:sent."
    )

    @Option(help: "The gateway's base URL.")
    var gateway = "http://127.0.0.1:5000"

    @Option(parsing: .number, help: "Seconds to wait for mails before failing.")
    var mailTimeout = 90

    @Flag(help: "Skip the CRM stop/run again/start part (for a shop whose workers run in other processes).")
    var noCrmRestart = false

    @Option(help: "The gateway's admin token, for the CRM stop/start (default: $ORDERSHOP_ADMIN_TOKEN).")
    var adminToken: String?

    @OptionGroup var redis: RedisOptions

    func validate() throws {
        guard mailTimeout >= 1 else { throw ValidationError("--mail-timeout must be at least 1") }
    }

    func run() async throws {
        let httpClient = makeHTTPClient()
        let demo = Demo(options: Demo.Options(
                gatewayURL: gateway, redis: try redis.configuration(), mailTimeout: .seconds(mailTimeout), crmRestart: !noCrmRestart,
                adminToken: adminToken ?? ProcessInfo.processInfo.environment["ORDERSHOP_ADMIN_TOKEN"]))
        let report: Demo.Report
        do {
            report = try await demo.run(httpClient: httpClient)
        } catch {
            try? await httpClient.shutdown()
            throw error
        }
        try? await httpClient.shutdown()
        if !report.passed { throw ExitCode(1) }
    }
}
