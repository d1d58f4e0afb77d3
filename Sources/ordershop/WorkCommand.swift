import ArgumentParser
import OrderShop
import RedisClient
import ServiceLifecycle
import StreamWorker
import WorkerMetricsHTTP

/// `ordershop work crm|billing`: one worker process, a consumer in its group. Run as many as
/// you like; they share the work, and a crashed one's entries are reclaimed by the others.
struct WorkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "work",
        abstract: "Run a worker: crm (group crm) or billing (group billing). Mails go through the msg service.",
        discussion: "SIGTERM or SIGINT drains it: nothing new is read, handlers in flight finish and are acknowledged."
    )

    @Argument(help: "The worker: crm or billing.")
    var worker: String

    @Option(help: "Port of GET /metrics and GET /healthz (0: none).")
    var metricsPort = WorkerName.defaultMetricsPort

    @Option(help: "Address of the metrics endpoint.")
    var metricsHost = "0.0.0.0"

    @Option(parsing: .number, help: "Handlers in flight at most.")
    var concurrency = 64

    @Option(parsing: .number, help: "Entries read ahead of the handlers (default: a read for each reader and the reclaimer of each stream read, 100 × (--readers + 1) per stream, at most 10000 in all; at least --concurrency).")
    var prefetch: Int?

    @Option(parsing: .number, help: "XREADGROUP readers per subscription, each on its own Redis connection (1 where connections are scarce).")
    var readers = 2

    @Option(help: "A stable consumer name (default: <host>-<pid>-<random>). One process at a time: a second one with the same name refuses to start.")
    var consumer: String?

    @Option(parsing: .number, help: "Seconds after which a silent consumer's entries may be reclaimed by another.")
    var leaseSeconds = 5.0

    @Option(help: .hidden)
    var plantedBug: String?

    /// The chaos harness's slow-handler mode: after msg took a mail, wait up to this many
    /// milliseconds before returning, so that kills often land between effect and settle.
    @Option(help: .hidden)
    var chaosPauseAfterMailMs = 0

    @OptionGroup var services: ServiceURLOptions
    @OptionGroup var redis: RedisOptions
    @OptionGroup var confirm: ConfirmationOptions
    @OptionGroup var layout: LayoutOptions

    func validate() throws {
        guard WorkerName(rawValue: worker) != nil else { throw ValidationError("unknown worker '\(worker)'; one of crm, billing") }
        // Upper bounds: each handler slot and read-ahead entry is held in memory, and a typo of
        // a few zeros reserved them all at start (`--concurrency 1000000000` was killed for
        // lack of memory before it logged anything).
        guard (1...10_000).contains(concurrency) else { throw ValidationError("--concurrency must be 1-10000") }
        if let prefetch, !(1...1_000_000).contains(prefetch) { throw ValidationError("--prefetch must be 1-1000000") }
        guard (1...64).contains(readers) else { throw ValidationError("--readers must be 1-64") }
        try PortValidation.check(metricsPort, "--metrics-port")
        if let consumer {
            // An unset variable (`--consumer "$POD_NAME"`) made every pod the consumer ""; a
            // newline or U+2028 broke the log line, U+202E turned it around, U+200B alone looked
            // blank (two trials).
            let unseen: Set<Unicode.GeneralCategory> = [.control, .format, .lineSeparator, .paragraphSeparator]
            guard !consumer.unicodeScalars.allSatisfy({ $0.properties.isWhitespace || unseen.contains($0.properties.generalCategory) }) else {
                throw ValidationError("--consumer must not be empty or blank")
            }
            guard !consumer.unicodeScalars.contains(where: { unseen.contains($0.properties.generalCategory) }) else {
                throw ValidationError("--consumer must not contain control, format or line-separator characters (a newline, a tab, U+200B, U+2028)")
            }
        }
        guard leaseSeconds >= 1 else { throw ValidationError("--lease-seconds must be at least 1") }
        guard chaosPauseAfterMailMs >= 0 else { throw ValidationError("--chaos-pause-after-mail-ms must not be negative") }
        if let plantedBug, PlantedBug(rawValue: plantedBug) == nil && plantedBug != "no-idempotency" {
            let known = PlantedBug.allCases.map(\.rawValue) + ["no-idempotency"]
            throw ValidationError("unknown planted bug '\(plantedBug)'; this build knows \(known.joined(separator: ", "))")
        }
    }

    func run() async throws {
        let name = WorkerName(rawValue: worker)!
        var named = makeLogger("ordershop.work.\(name)")
        named[metadataKey: "worker"] = "\(name)"
        let logger = named
        if metricsPort > 0 { _ = WorkerMetrics.registry }
        let redisConfiguration = try redis.configuration()
        // A pool for one server, a cluster client for a Redis Cluster (told apart once Redis answers).
        let client: any RedisClientProtocol
        do {
            let connect: @Sendable () async throws -> any RedisClientProtocol = {
                try await RedisReadiness.connect(redisConfiguration, maximumConnections: 16, logger: logger)
            }
            // Meanwhile the metrics port answers: /livez 200, /healthz 503 (a closed port failed
            // a Kubernetes liveness probe, which restarted the worker while Redis was away); and
            // SIGTERM or SIGINT ends the wait (exit 0).
            let (port, host) = (metricsPort, metricsHost)
            guard
                let connected = try await stoppingOnSignal(
                    logger: logger,
                    while: {
                        try await WaitingEndpoint.serving(
                            port: port, host: host, router: WaitingEndpoint.workerRouter(service: "\(name)-worker"), logger: logger, while: connect)
                    })
            else { return }
            client = connected
        } catch {
            throw exitFailing(error, logger: logger) { _ in "--metrics-port (0: none)" }
        }
        let layout = try self.layout.layout()
        let context = try ShopContext(pool: client, logger: logger, layout: layout)
        let httpClient = makeHTTPClient()
        var mail = MailClient(baseURL: services.addresses.url(.msg), client: httpClient)
        var configuration = WorkerConfiguration(
            consumerName: consumer, maxInFlight: concurrency, prefetch: prefetch, readers: readers, retryBackoff: .shopWorkers)
        configuration.replicaConfirmation = try confirm.confirmation()
        configuration.lease = .milliseconds(Int64(leaseSeconds * 1000))
        // Deliberate defects for the chaos harness to catch (never in production):
        // ack-before-handling, or no-idempotency (plain settle and a random key per mail).
        switch plantedBug {
        case "no-idempotency":
            configuration.settleMode = .plain
            mail.plantedRandomKeys = true
        case let bug?:
            configuration.plantedBug = PlantedBug(rawValue: bug)
        case nil:
            break
        }
        let subscriptions = name.subscriptions(readModel: context.readModel, mail: mail, pauseAfterMail: .milliseconds(chaosPauseAfterMailMs))
        let streamWorker = StreamWorker(client: client, configuration: configuration, subscriptions: subscriptions, logger: logger)
        // The worker joins its groups once its endpoint listens and Redis answers: a taken port
        // or a refused password ends the process before it holds anything.
        let metricsBound = StartGate(waitingFor: metricsPort > 0 ? 1 : 0)
        // `/healthz` 503 until the layout check has passed (it may wait for a service to record
        // the layout): a readiness probe sees a worker that reads nothing yet (a trial: 200 "ok").
        let layoutChecked = StartGate(waitingFor: 1)
        // The Redis client's upkeep (a cluster's topology refresh) is listed first, so it stops last.
        // Tracing first of all, so that it stops last, after the drain's last spans.
        var services: [any Service] = [
            SupervisedService("tracing", try ShopTracing.bootstrap(serviceName: "ordershop-\(name)-worker", logger: logger)),
            SupervisedService("Redis client", RedisClientService(client)),
        ]
        if metricsPort > 0 {
            // Listed first, so it stops last: /healthz answers while the worker drains.
            let (port, host) = (metricsPort, metricsHost)
            let listener = HTTPListener(.metrics, host: host, port: port, onListening: { _ in metricsBound.arrive() }) {
                WorkerHTTPServer(
                    port: port, host: host, service: "\(name)-worker", client: client, logger: logger,
                    onListening: $0, startupProblem: { layoutChecked.isOpen ? nil : HealthCheck.layoutPending })
            }
            services.append(SupervisedService("\(Listener.metrics)", listener))
        }
        let confirmation = configuration.replicaConfirmation
        let endpointsAndRedisReady: @Sendable () async throws -> Void = {
            try await metricsBound.wait()
            try await RedisReadiness.wait(for: client, at: redisConfiguration, logger: logger)
            // Another partition count than the shop's would read streams no publisher writes.
            try await layout.claim(in: client, mayRecord: false) {
                logger.notice("waiting for a service to record the shop's partition layout (\(ShopLayout.recordKey)) before reading its streams")
            }
            layoutChecked.arrive()
            // A Redis that may evict keys would drop the idempotency markers.
            try await EvictionPolicyCheck.check(client, at: redisConfiguration, logger: logger)
            if let confirmation { try await ReplicaReadiness.wait(for: confirmation, client: client, at: redisConfiguration, logger: logger) }
        }
        // A stable name is this process's alone: the worker reads once the lock is held, and the
        // lock (listed before the worker, so it stops after it) is released once it has drained.
        let nameLocked = StartGate(waitingFor: consumer == nil ? 0 : 1)
        if let consumer, let first = subscriptions.first {
            let lock = ConsumerNameLock(
                stream: first.stream, group: first.group, consumer: consumer, lease: configuration.lease, pool: client, logger: logger,
                acquired: { nameLocked.arrive() })
            services.append(SupervisedService("consumer name lock", StartsWhenReady(lock, when: endpointsAndRedisReady)))
        }
        services.append(
            SupervisedService(
                "\(name) worker",
                StartsWhenReady(streamWorker) {
                    try await endpointsAndRedisReady()
                    try await nameLocked.wait()
                }))
        do {
            try await runServices(
                services, logger: logger, maximumGracefulShutdown: configuration.drainDeadline + .seconds(10), thenClose: httpClient, client)
        } catch {
            throw exitFailing(error, logger: logger) { _ in "--metrics-port (0: none)" }
        }
    }
}
