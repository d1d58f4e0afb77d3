import ArgumentParser
import Hummingbird
import OrderShop
import RedisClient
import ServiceLifecycle
import StreamWorker

/// `ordershop serve NAME`: one OrderShop HTTP service as its own process.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run one HTTP service: gateway, customer, product, inventory, order, billing or msg.",
        discussion: "Default ports: gateway 5000, customer 5001, product 5002, inventory 5003, order 5004, billing 5005, msg 5006. "
            + "SIGTERM or SIGINT stops it gracefully (requests in flight finish)."
    )

    @Argument(help: "The service: \(ServiceName.allCases.map(\.rawValue).joined(separator: ", ")).")
    var service: String

    @Option(help: "Address to listen on.")
    var host = "0.0.0.0"

    @Option(parsing: .number, help: "Port to listen on (default: the service's own).")
    var port: Int?

    /// A deliberate defect for chaos runs: `gateway-drops-idempotency-key` (gateway only),
    /// `reaper-commits-all`, `reaper-forgets-aborts`, `order-oversells` (order only),
    /// `msg-forgets-keys` (msg only).
    @Option(help: .hidden)
    var plantedBug: String?

    /// The chaos harness's mode (order only): each order change waits this many milliseconds
    /// between reserving its stock and making the change, so that a SIGKILL finds changes
    /// between their steps.
    @Option(help: .hidden)
    var chaosStepPauseMs = 0

    static let plantedBugs: [String: ServiceName] = (ReservationReaper.PlantedBug.allCases.map(\.rawValue) + OrderChangePlantedBug.allCases.map(\.rawValue))
        .reduce(into: ["gateway-drops-idempotency-key": .gateway, "msg-forgets-keys": .msg, "customers-misplaced": .customer]) { $0[$1] = .order }

    @OptionGroup var services: ServiceURLOptions
    @OptionGroup var redis: RedisOptions
    @OptionGroup var confirm: ConfirmationOptions
    @OptionGroup var layout: LayoutOptions

    func validate() throws {
        guard ServiceName(rawValue: service) != nil else {
            throw ValidationError("unknown service '\(service)'; one of \(ServiceName.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let plantedBug, Self.plantedBugs[plantedBug]?.rawValue != service {
            throw ValidationError(
                "unknown planted bug '\(plantedBug)' for \(service); this build knows "
                    + Self.plantedBugs.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value) only)" }.joined(separator: ", "))
        }
        try PortValidation.check(port, "--port")
        guard chaosStepPauseMs >= 0 else { throw ValidationError("--chaos-step-pause-ms must not be negative") }
    }

    func run() async throws {
        let name = ServiceName(rawValue: service)!
        let logger = makeLogger("ordershop.\(name)")
        // A pool for one server, a cluster client for a Redis Cluster (`?cluster=yes`): made without
        // Redis, so that the service starts and answers 503 while Redis is not there yet.
        let redisConfiguration = try redis.configuration()
        let pool = try makeRedisClient(redisConfiguration, maximumConnections: 32, logger: logger)
        // A Redis that refuses this service (its password) is said in one line before anything
        // listens: before, "listening" came first and the refusal a moment later.
        do {
            try await RedisReadiness.refuseIfUnusable(pool, at: redisConfiguration)
        } catch {
            throw exitFailing(error, logger: logger) { _ in "--port" }
        }
        let layout = try self.layout.layout()
        let context = try ShopContext(
            pool: pool, logger: logger, confirmation: try confirm.confirmation(), orderStepPause: .milliseconds(chaosStepPauseMs),
            orderPlantedBug: plantedBug.flatMap(OrderChangePlantedBug.init(rawValue:)), layout: layout,
            misplacesCreations: plantedBug == "customers-misplaced", checksLayout: name != .msg)
        let httpClient = makeHTTPClient()
        let (host, port) = (self.host, self.port ?? name.defaultPort)
        var gateway = GatewayOptions(addresses: services.addresses)
        gateway.plantedDropsIdempotencyKeys = plantedBug == "gateway-drops-idempotency-key"
        let msg = MsgOptions(plantedForgetsKeys: plantedBug == "msg-forgets-keys")
        let listener = HTTPListener(.service(name), host: host, port: port) { onRunning in
            buildApplication(
                for: name, host: host, port: port, context: context, httpClient: httpClient, gateway: gateway, msg: msg, onServerRunning: onRunning)
        }
        // The service answers without Redis (its /healthz says 503), but a Redis that refuses the
        // password cannot come right by waiting: that ends the process.
        let confirmation = context.confirmation
        let redisCheck = StartsWhenReady(WaitsForShutdown()) {
            try await RedisReadiness.wait(for: pool, at: redisConfiguration, logger: logger)
            // A user Redis lets in but not write what the service writes: it cannot do its job.
            // Another partition count than the shop's would serve keys no other process uses
            // (msg keeps no entity: its user may not read the record).
            if name != .msg {
                try await layout.claim(in: pool, mayRecord: name != .gateway) {
                    logger.notice("waiting for a service to record the shop's partition layout (\(ShopLayout.recordKey)); /healthz answers 503 until then")
                }
                context.health.layout.arrive()
            }
            try await KeyAccessProbe.check(name, client: pool, at: redisConfiguration, layout: layout)
            // A Redis that may evict keys would drop what makes a retry harmless.
            try await EvictionPolicyCheck.check(pool, at: redisConfiguration, logger: logger)
            if let confirmation { try await ReplicaReadiness.wait(for: confirmation, client: pool, at: redisConfiguration, logger: logger) }
        }
        do {
            let tracing = try ShopTracing.bootstrap(serviceName: "ordershop-\(name)", logger: logger)
            var services: [any Service] = [SupervisedService("tracing", tracing)]
            // The cluster client's topology upkeep, listed before its users so that it stops after them.
            if pool is RedisClusterClient { services.append(SupervisedService("Redis cluster client", RedisClientService(pool))) }
            services += [SupervisedService("\(Listener.service(name))", listener), SupervisedService("Redis check", redisCheck)]
            // The order service ends the stock reservations its order changes left open.
            if name == .order {
                let reaper = ReservationReaper(store: context.store, logger: logger, plantedBug: plantedBug.flatMap(ReservationReaper.PlantedBug.init(rawValue:)))
                services.append(SupervisedService("stock reservation reaper", reaper))
            }
            try await runServices(
                services,
                logger: logger, maximumGracefulShutdown: .seconds(30), thenClose: httpClient, pool)
        } catch {
            throw exitFailing(error, logger: logger) { _ in "--port" }
        }
    }
}
