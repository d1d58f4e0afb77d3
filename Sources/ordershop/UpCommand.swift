import ArgumentParser
import Foundation
import OrderShop
import RedisClient

/// `ordershop up`: every service and both workers in one process, with a local redis-server
/// when no Redis is configured and none listens on 127.0.0.1:6379.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run the whole shop in one process (gateway on :5000), starting a redis-server if needed.",
        discussion: """
            Redis: --url or $REDIS_URL when given; else 127.0.0.1:6379 when something answers there; else a redis-server \
            child on that port (append-only file on, data in --data-dir or a temporary directory), stopped on exit.
            Ctrl-C (SIGINT), SIGTERM or SIGHUP stops everything: the gateway first, then the workers drain, then the services, \
            then the redis-server (or cluster) it started, which runs in a process group of its own so that Ctrl-C does not \
            stop it under the draining workers.
            With an admin token (--admin-token or $ORDERSHOP_ADMIN_TOKEN) the gateway also serves GET /admin/workers and \
            POST /admin/workers/<crm|billing>/<stop|start> to requests with `Authorization: Bearer <token>`; without one it does not.
            The gateway serves the operations dashboard at /dashboard (see `ordershop dashboard`); its replay and purge need the token.
            """
    )

    @Option(help: "Address every service listens on.")
    var host = "127.0.0.1"

    @Option(help: "Gateway port (0: any free port; the start-up line names it).")
    var gatewayPort = ServiceName.gateway.defaultPort

    @Option(help: "Port of the customer service; product, inventory, order, billing and msg take the next ones (0: any free ports).")
    var servicePortBase = ServiceName.customer.defaultPort

    @Option(help: "Port of the workers' /metrics and /healthz (0: none).")
    var metricsPort = WorkerName.defaultMetricsPort

    @Option(help: "Data directory of the redis-server child (default: a temporary directory, removed on exit).")
    var dataDir: String?

    @Option(
        parsing: .number,
        help: "Port of the redis-server child, and where to look for a running Redis (default: 6379). With --cluster: the first node's port, the other nodes on the next ones, then their cluster bus ports (2 × nodes ports from it; default: free ports).")
    var redisPort: Int?

    @Flag(help: "Start an embedded Redis Cluster (3 primaries, 3 replicas, free ports or from --redis-port, removed on exit) instead of one redis-server.")
    var cluster = false

    @Option(
        parsing: .number,
        help: "Replicas per primary of the --cluster (default 1): 0 starts three redis-servers instead of six where cores are few (a primary's death then stops up); at most 2.")
    var clusterReplicas: Int?

    @Flag(help: "Do not serve the /admin/workers routes.")
    var noAdmin = false

    @Option(help: "Bearer token of the /admin/workers routes and the dashboard's actions (default: $ORDERSHOP_ADMIN_TOKEN); without one they are not served.")
    var adminToken: String?

    @Flag(help: "Do not serve the operations dashboard at /dashboard on the gateway.")
    var noDashboard = false

    @Flag(
        help: "Forward commands from the gateway and hand mails to msg over loopback HTTP, as separate processes do (default: their routers are called in this process).")
    var httpBetweenServices = false

    @OptionGroup var redis: RedisOptions
    @OptionGroup var confirm: ConfirmationOptions
    @OptionGroup var layout: LayoutOptions

    func validate() throws {
        try PortValidation.check(gatewayPort, "--gateway-port")
        try PortValidation.check(servicePortBase, "--service-port-base")
        if servicePortBase > 65535 - 5 { throw ValidationError("--service-port-base \(servicePortBase): the msg service would take \(servicePortBase + 5), past 65535") }
        try PortValidation.check(metricsPort, "--metrics-port")
        if let redisPort { try PortValidation.check(redisPort, "--redis-port", allowsZero: false) }
        if cluster, let redisPort {
            // The nodes and then their bus ports, from --redis-port on (a trial confined to a
            // port range could not run --cluster, whose nodes took free ports anywhere).
            let ports = 2 * 3 * (1 + (clusterReplicas ?? 1))
            guard redisPort + ports - 1 <= 65535 else {
                throw ValidationError("--redis-port \(redisPort): --cluster needs \(ports) ports from it (its nodes, then their cluster bus ports), past 65535")
            }
        }
        if let clusterReplicas {
            guard cluster else { throw ValidationError("--cluster-replicas is for the cluster --cluster starts") }
            guard (0...2).contains(clusterReplicas) else { throw ValidationError("--cluster-replicas \(clusterReplicas): 0, 1 or 2") }
        }
        if cluster && redis.isConfigured { throw ValidationError("--cluster starts a cluster of its own; for yours, give --url with ?cluster=yes instead") }
        if cluster && dataDir != nil { throw ValidationError("--cluster keeps its nodes' data in temporary directories; --data-dir is for one redis-server") }
    }

    func run() async throws {
        var ports: [ServiceName: Int] = [.gateway: gatewayPort]
        for (i, s) in [ServiceName.customer, .product, .inventory, .order, .billing, .msg].enumerated() {
            ports[s] = servicePortBase == 0 ? 0 : servicePortBase + i
        }
        var stack = ShopStack.Options(
            host: host, ports: ports, metricsPort: metricsPort > 0 ? metricsPort : nil, adminRoutes: !noAdmin,
            adminToken: adminToken ?? ProcessInfo.processInfo.environment["ORDERSHOP_ADMIN_TOKEN"], dashboard: !noDashboard,
            confirmation: try confirm.confirmation(), callsInProcess: !httpBetweenServices)
        stack.layout = try layout.layout()
        let options = OrderShopUp.Options(
            redis: redis.isConfigured ? try redis.configuration() : nil, dataDirectory: dataDir, redisPort: redisPort ?? 6379, cluster: cluster,
            clusterReplicas: clusterReplicas ?? 1, clusterFirstPort: cluster ? redisPort : nil, stack: stack)
        let logger = makeLogger("ordershop.up")
        do {
            try await OrderShopUp.run(options, tracing: try ShopTracing.bootstrap(serviceName: "ordershop", logger: logger), logger: logger)
        } catch {
            throw exitFailing(error, logger: logger) { listener in
                switch listener {
                case .service(.gateway): "--gateway-port"
                case .service: "--service-port-base"
                case .metrics: "--metrics-port (0: none)"
                case .redisServer: "--redis-port (or --url for a Redis of your own)"
                case .dashboard: "--gateway-port"
                }
            }
        }
    }
}
