import AsyncHTTPClient
import Logging
import RedisClient
import ServiceLifecycle
import StreamWorker
import WorkerMetricsHTTP

/// Every OrderShop service and worker in one process: what `ordershop up` runs, and what the
/// end-to-end tests start. Each service listens on its own port and talks to the others over
/// HTTP exactly as separate processes would, or with ``Options/callsInProcess`` calls their
/// routers directly.
public final class ShopStack: Sendable {
    public struct Options: Sendable {
        public var host: String
        /// The port of each HTTP service (0: any free port, see ``ShopStack/directory``).
        public var ports: [ServiceName: Int]
        /// The workers to run in this process.
        public var workers: [WorkerName]
        public var workerConfiguration: WorkerConfiguration
        /// The port of the workers' `/metrics` and `/healthz`; nil for none.
        public var metricsPort: Int?
        /// Expose `/admin/workers/<name>/stop|start` on the gateway (only with an ``adminToken``).
        public var adminRoutes: Bool
        /// The bearer token the admin routes require; nil: they are not served.
        public var adminToken: String?
        /// Serve the operations dashboard on the gateway at `/dashboard` (its actions need ``adminToken``).
        public var dashboard: Bool
        /// `--confirm-replicas`: commands and mails answer 2xx only once replicas have them.
        public var confirmation: ReplicaConfirmation?
        /// The gateway forwards commands, and the workers hand mails to msg, by calling their
        /// routers in this process instead of over loopback HTTP (``InProcessServices``). The
        /// services still listen on their ports. Off: every call goes over HTTP, exactly as
        /// between separate processes.
        public var callsInProcess: Bool
        /// How each entity type's events and read model are spread over partitions
        /// (``ShopLayout``): one partition unless said.
        public var layout: ShopLayout = .single
        /// Called with each service and its port once it listens.
        public var onServiceRunning: @Sendable (ServiceName, Int) async -> Void
        /// Called once every listener (each service's, and the workers' metrics when served) is bound.
        public var onAllListening: @Sendable () async -> Void = {}

        public init(
            host: String = "127.0.0.1", ports: [ServiceName: Int] = Dictionary(uniqueKeysWithValues: ServiceName.allCases.map { ($0, $0.defaultPort) }),
            workers: [WorkerName] = WorkerName.allCases, workerConfiguration: WorkerConfiguration = .init(retryBackoff: .shopWorkers),
            metricsPort: Int? = WorkerName.defaultMetricsPort, adminRoutes: Bool = true, adminToken: String? = nil, dashboard: Bool = false,
            confirmation: ReplicaConfirmation? = nil, callsInProcess: Bool = false,
            onServiceRunning: @escaping @Sendable (ServiceName, Int) async -> Void = { _, _ in }
        ) {
            self.host = host
            self.ports = ports
            self.workers = workers
            self.workerConfiguration = workerConfiguration
            self.metricsPort = metricsPort
            self.adminRoutes = adminRoutes
            self.adminToken = adminToken
            self.dashboard = dashboard
            self.confirmation = confirmation
            self.callsInProcess = callsInProcess
            self.onServiceRunning = onServiceRunning
        }
    }

    /// In graceful-shutdown order reversed: a ServiceGroup stops the last first, so the gateway
    /// stops taking requests first, then the workers drain (msg still up for their last mails),
    /// then the owners, then msg.
    public let services: [any Service]
    public let control: WorkerControl
    /// Where each service listens (updated as they start).
    public let directory: ServiceDirectory
    private let clients: [any RedisClientProtocol]

    public var addresses: ServiceAddresses { directory.snapshot }
    public var gatewayURL: String { directory.url(.gateway) }

    public init(redis: RedisConfiguration, httpClient: HTTPClient, options: Options, logger: Logger) throws {
        let callHost = options.host == "0.0.0.0" ? "127.0.0.1" : options.host
        let inProcess = options.callsInProcess ? InProcessServices() : nil
        let directory = ServiceDirectory(ServiceAddresses.loopback(ports: options.ports, host: callHost), host: callHost, inProcess: inProcess)
        var clients: [any RedisClientProtocol] = []
        var services: [any Service] = []
        // A pool for one server; a cluster client (with its topology upkeep, listed before the
        // services that use it so that it stops after them) for a Redis Cluster (`?cluster=yes`).
        func pool(_ size: Int) throws -> any RedisClientProtocol {
            let client = try makeRedisClient(redis, maximumConnections: size, logger: logger)
            if client is RedisClusterClient { services.append(SupervisedService("Redis cluster client", RedisClientService(client))) }
            clients.append(client)
            return client
        }
        let http = try ShopContext(pool: try pool(32), logger: logger, confirmation: options.confirmation, layout: options.layout, checksLayout: true)

        let running = options.onServiceRunning
        let runsMetrics = options.metricsPort != nil && !options.workers.isEmpty
        // The workers start once every listener is bound (a taken port stops the process before
        // any consumer joins a group) and Redis answers.
        let listenersBound = StartGate(waitingFor: ServiceName.allCases.count + (runsMetrics ? 1 : 0))
        let allListening = options.onAllListening
        @Sendable func arrived() async {
            if listenersBound.arrive() { await allListening() }
        }
        func app(_ name: ServiceName, gateway: GatewayOptions = .init()) {
            let port = options.ports[name] ?? name.defaultPort
            let responder = buildRouter(for: name, context: http, httpClient: httpClient, gateway: gateway).buildResponder()
            let logger = serviceLogger(name, http)
            inProcess?.register(name, responder, logger: logger)
            let listener = HTTPListener(
                .service(name), host: options.host, port: port,
                onListening: { bound in
                    directory.listening(name, port: bound)
                    await running(name, bound)
                    await arrived()
                }
            ) { onRunning in
                buildApplication(for: name, responder: responder, host: options.host, port: port, logger: logger, onServerRunning: onRunning)
            }
            services.append(SupervisedService("\(Listener.service(name))", listener))
        }
        for name in [ServiceName.msg, .customer, .product, .inventory, .order, .billing] { app(name) }
        // Another partition count than the shop's in Redis would serve keys no other process
        // uses: the stack ends, saying so (its workers wait for the same check).
        let layout = options.layout
        services.append(
            SupervisedService(
                "layout check",
                StartsWhenReady(WaitsForShutdown()) {
                    try await RedisReadiness.wait(for: http.pool, at: redis, logger: logger)
                    try await layout.claim(in: http.pool)
                    http.health.layout.arrive()
                }))
        // The order service's reaper of stock reservations left open (see OrderSteps).
        services.append(SupervisedService("stock reservation reaper", ReservationReaper(store: http.store, logger: logger)))

        var switchables: [SwitchableService] = []
        let mail = MailClient(directory: directory, client: httpClient)
        for worker in options.workers {
            // Each worker has its own pool: its blocking reads must not starve the HTTP services.
            let context = try ShopContext(pool: try pool(16), logger: logger, layout: options.layout)
            var named = logger
            named[metadataKey: "worker"] = "\(worker)"
            let workerLogger = named
            var confirmed = options.workerConfiguration
            if confirmed.replicaConfirmation == nil { confirmed.replicaConfirmation = options.confirmation }
            let configuration = confirmed
            let subscriptions = worker.subscriptions(readModel: context.readModel, mail: mail)
            let switchable = SwitchableService(name: worker.rawValue, logger: workerLogger) {
                StreamWorker(client: context.pool, configuration: configuration, subscriptions: subscriptions, logger: workerLogger)
            }
            switchables.append(switchable)
            services.append(
                SupervisedService(
                    "\(worker) worker",
                    StartsWhenReady(switchable) {
                        try await listenersBound.wait()
                        try await RedisReadiness.wait(for: context.pool, at: redis, logger: workerLogger)
                        try await options.layout.claim(in: context.pool)
                        try await EvictionPolicyCheck.check(context.pool, at: redis, logger: workerLogger)
                        if let confirmation = configuration.replicaConfirmation {
                            try await ReplicaReadiness.wait(for: confirmation, client: context.pool, at: redis, logger: workerLogger)
                        }
                    }))
        }
        if let metricsPort = options.metricsPort, runsMetrics {
            let pool = http.pool
            let listener = HTTPListener(.metrics, host: options.host, port: metricsPort, onListening: { _ in await arrived() }) {
                WorkerHTTPServer(port: metricsPort, host: options.host, service: "workers", client: pool, logger: logger, onListening: $0)
            }
            services.append(SupervisedService("\(Listener.metrics)", listener))
        }
        control = WorkerControl(switchables)
        var dashboard: Dashboard?
        var primaryPools: ClusterPrimaryPools?
        if options.dashboard {
            // The dashboard reads each node's own keys: on a cluster, every primary of the moment.
            let reader: OperationsReader
            if let cluster = http.pool as? RedisClusterClient {
                let pools = ClusterPrimaryPools(client: cluster)
                primaryPools = pools
                reader = OperationsReader(clusterPrimaries: pools)
            } else {
                reader = OperationsReader(nodes: [http.pool])
            }
            let board = Dashboard(reader: reader, adminToken: options.adminToken, host: options.host)
            services.append(SupervisedService("dashboard sampler", board.sampler(logger: logger)))
            dashboard = board
        }
        app(
            .gateway,
            gateway: GatewayOptions(directory: directory, admin: options.adminRoutes ? control : nil, adminToken: options.adminToken, dashboard: dashboard))

        self.services = services
        self.directory = directory
        self.clients = clients
        self.primaryPools = primaryPools
    }

    /// The dashboard's pools of a cluster's primaries, if it has them.
    private let primaryPools: ClusterPrimaryPools?

    /// Closes the Redis clients (after the services have stopped).
    public func shutdown() async {
        for c in clients { await c.shutdown() }
        await primaryPools?.shutdown()
    }
}
