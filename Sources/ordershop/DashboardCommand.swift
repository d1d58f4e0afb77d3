import ArgumentParser
import Foundation
import OrderShop
import RedisClient

/// `ordershop dashboard`: the operations page on its own (the same page `ordershop up` serves at
/// /dashboard on the gateway).
struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Serve the operations dashboard: streams, groups, consumers, rates, dead letters with replay and purge.",
        discussion: """
            Open http://127.0.0.1:5080/ (the page refreshes itself every 2 s). Replay and purge need the admin token \
            (--admin-token or $ORDERSHOP_ADMIN_TOKEN), typed into the page; without a configured token they are refused. \
            The data is readable without the token only when listening on loopback (the default); with --host set to \
            another address every API request needs the token, and the command refuses to start without one.
            """
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port; the start-up line names it).") var port = 5080
    @Option(help: "Bearer token of replay and purge (default: $ORDERSHOP_ADMIN_TOKEN).") var adminToken: String?
    @Option(help: "Streams to show (a glob).") var match: String = "*"
    @Option(help: "Seconds between two samples of the rate charts (10 minutes are kept).") var sampleInterval = 5
    @OptionGroup var redis: RedisOptions

    var token: String? { (adminToken ?? ProcessInfo.processInfo.environment["ORDERSHOP_ADMIN_TOKEN"]).flatMap { $0.isEmpty ? nil : $0 } }

    func validate() throws {
        guard sampleInterval > 0 else { throw ValidationError("--sample-interval must be above 0") }
        if !Dashboard.isLoopback(host), token == nil {
            throw ValidationError("listening on \(host) (not loopback) needs an admin token: --admin-token or $ORDERSHOP_ADMIN_TOKEN")
        }
    }

    func run() async throws {
        let logger = makeLogger("ordershop.dashboard")
        let pools = try await RedisNodePools.primaries(try redis.configuration())
        let dashboard = Dashboard(
            reader: OperationsReader(nodes: pools, nodeNames: pools.map { $0.configuration.endpoint.description }, match: match), history: RateHistory(interval: .seconds(sampleInterval)),
            adminToken: token, host: host)
        let (host, port) = (self.host, self.port)
        let shown = host == "0.0.0.0" ? "127.0.0.1" : host
        let actions = token == nil ? " (replay and purge off: no admin token)" : ""
        let listener = HTTPListener(
            .dashboard, host: host, port: port,
            onListening: { bound in
                FileHandle.standardOutput.write(Data("dashboard: http://\(shown):\(bound)/\(actions)\n".utf8))
            }
        ) { onRunning in
            buildDashboardApplication(dashboard, host: host, port: port, logger: logger, onServerRunning: onRunning)
        }
        do {
            try await runUntilSignalled(
                processServiceGroup(
                    [SupervisedService("dashboard sampler", dashboard.sampler(logger: logger)), SupervisedService("\(Listener.dashboard)", listener)],
                    logger: logger),
                logger: logger)
        } catch {
            for pool in pools { await pool.shutdown() }
            throw exitFailing(error, logger: logger) { _ in "--port" }
        }
        for pool in pools { await pool.shutdown() }
    }
}
