import ArgumentParser
import Foundation
import Logging
import OrderShop
import RedisClient
import StreamWorker

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
    @Option(parsing: .number, help: "Port to listen on (0: any free port; the start-up line names it).") var port = 5080
    @Option(help: "Bearer token of replay and purge (default: $ORDERSHOP_ADMIN_TOKEN).") var adminToken: String?
    @Option(help: "Streams to show (a glob).") var match: String = "*"
    @Option(parsing: .number, help: "Seconds between two samples of the rate charts (10 minutes are kept).") var sampleInterval = 5
    @OptionGroup var redis: RedisOptions

    var token: String? { (adminToken ?? ProcessInfo.processInfo.environment["ORDERSHOP_ADMIN_TOKEN"]).flatMap { $0.isEmpty ? nil : $0 } }

    func validate() throws {
        try PortValidation.check(port, "--port")
        guard sampleInterval > 0 else { throw ValidationError("--sample-interval must be above 0") }
        if !Dashboard.isLoopback(host), token == nil {
            throw ValidationError("listening on \(host) (not loopback) needs an admin token: --admin-token or $ORDERSHOP_ADMIN_TOKEN")
        }
    }

    func run() async throws {
        let logger = makeLogger("ordershop.dashboard")
        let configuration = try redis.configuration()
        // Meanwhile the port answers 503 "waiting for Redis" after a second (and a taken port
        // ends the command, as it does later); SIGTERM or SIGINT ends the wait (exit 0).
        let (host, port) = (self.host, self.port)
        let connected: Connected?
        do {
            connected = try await stoppingOnSignal(logger: logger) {
                try await WaitingEndpoint.serving(.dashboard, port: port, host: host, router: WaitingEndpoint.dashboardRouter(), logger: logger) {
                    try await Self.connect(configuration, logger: logger)
                }
            }
        } catch let failure as ListenFailure {
            throw exitFailing(failure, logger: logger) { _ in "--port" }
        }
        guard let connected else { return }
        let (pools, cluster) = (connected.pools, connected.cluster)
        func close() async {
            for pool in pools { await pool.shutdown() }
            await cluster?.primaries.shutdown()
            await cluster?.client.shutdown()
        }
        let reader = cluster.map { OperationsReader(clusterPrimaries: $0.primaries, match: match) } ?? OperationsReader(nodes: pools, match: match)
        let dashboard = Dashboard(reader: reader, history: RateHistory(interval: .seconds(sampleInterval)), adminToken: token, host: host)
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
                    (cluster.map { [SupervisedService("Redis cluster client", RedisClientService($0.client))] } ?? [])
                        + [SupervisedService("dashboard sampler", dashboard.sampler(logger: logger)), SupervisedService("\(Listener.dashboard)", listener)],
                    logger: logger),
                logger: logger)
        } catch {
            await close()
            throw exitFailing(error, logger: logger) { _ in "--port" }
        }
        await close()
    }

    /// The pools the dashboard reads: one server's, or a cluster's client and its primaries. A
    /// struct, not a tuple: it is the value of a task-group child (``WaitingEndpoint``), and Swift
    /// 6.3.1's -O miscompiled a child returning a tuple from a do/catch (scripts/taskgroup-tuple-repro.swift).
    struct Connected: Sendable {
        var pools: [RedisConnectionPool]
        var cluster: (client: RedisClusterClient, primaries: ClusterPrimaryPools)?
    }

    /// One server: its pool. A cluster: its primaries of the moment (a failover moves the page
    /// to the promoted node), asked through a cluster client.
    ///
    /// A Redis that is not there yet is waited for, said once, as `serve` and `work` do (it
    /// exited 1 at once: trial H), whether the URL says `?cluster=yes|no` or it is asked; one
    /// that refuses the password or the certificate ends the command in one line (with
    /// `?cluster=no` it was served, every sample failing with WRONGPASS: a review).
    private static func connect(
        _ configuration: RedisConfiguration, logger: Logger
    ) async throws -> Connected {
        let client: any RedisClientProtocol
        let made: Connected
        if try await RedisReadiness.isCluster(configuration, logger: logger) {
            let clusterClient = try RedisClusterClient(configuration: try RedisClusterConfiguration(configuration))
            (client, made) = (clusterClient, Connected(pools: [], cluster: (clusterClient, ClusterPrimaryPools(client: clusterClient))))
        } else {
            let pool = try RedisConnectionPool(configuration: configuration, maximumConnections: 2)
            (client, made) = (pool, Connected(pools: [pool], cluster: nil))
        }
        do {
            try await RedisReadiness.waitUntilAnswering(client, at: configuration, logger: logger)
        } catch {
            await made.cluster?.primaries.shutdown()
            await client.shutdown()
            throw error
        }
        return made
    }
}
