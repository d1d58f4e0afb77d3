import AsyncHTTPClient
import LocalRedis
import Logging
import RedisClient
import ServiceLifecycle
import StreamWorker
import Synchronization
import WorkerMetricsHTTP

/// The Redis of `ordershop up`: the configured one; else the one answering on 127.0.0.1 at the
/// Redis port; else a redis-server child on that port, stopped (and its temporary directory
/// removed) when the group shuts down, gracefully or not.
final class UpRedis: Service, Sendable {
    private let options: OrderShopUp.Options
    private let logger: Logger
    private let chosen = Mutex<RedisConfiguration?>(nil)
    /// Opens once ``configuration`` is known.
    let ready = StartGate(waitingFor: 1)

    init(options: OrderShopUp.Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// The Redis to use (once ``ready`` is open).
    var configuration: RedisConfiguration? { chosen.withLock { $0 } }

    func run() async throws {
        if let configured = options.redis {
            use(configured)
            return try await gracefulShutdown()
        }
        if options.cluster { return try await runCluster() }
        let local = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: options.redisPort))
        if await OrderShopUp.answers(local) {
            OrderShopUp.say("using the Redis already listening on 127.0.0.1:\(options.redisPort)")
            use(local)
            return try await gracefulShutdown()
        }
        var o = LocalRedisServer.Options()
        o.port = options.redisPort
        o.appendOnly = true
        o.directory = options.dataDirectory
        // Ctrl-C reaches the whole foreground process group: redis-server would stop at once,
        // while the workers still drain against it (they retried for 20 s, then gave up). Here
        // it stops after them (SIGHUP, which it ignores anyway, stops `up` gracefully too).
        o.ownProcessGroup = true
        let server: LocalRedisServer
        do {
            server = try await LocalRedisServer(o)
        } catch let error as LocalRedisError where error.description.contains("Address already in use") {
            // Something that is not Redis (it did not answer PING) holds the port.
            throw ListenFailure(listener: .redisServer, host: "127.0.0.1", port: options.redisPort, reason: "Address already in use")
        }
        OrderShopUp.say(
            "started redis-server (pid \(server.pid.map(String.init) ?? "?"), append-only, data in \(server.directory)) on 127.0.0.1:\(server.port)")
        use(local)
        do {
            try await untilShutdown(watching: [server], cluster: nil)
        } catch {
            await server.shutdown()
            OrderShopUp.say("redis-server stopped")
            throw error
        }
        await server.shutdown()
        OrderShopUp.say("redis-server stopped")
    }

    /// `--cluster`: a Redis Cluster of 3 primaries with their replicas, stopped with the group.
    private func runCluster() async throws {
        var o = LocalRedisCluster.Options()
        o.replicasPerPrimary = options.clusterReplicas
        o.firstPort = options.clusterFirstPort
        o.appendOnly = true
        o.ownProcessGroup = true  // as the single server's, above
        let cluster = try await LocalRedisCluster(o)
        let replicas = o.primaries * o.replicasPerPrimary
        OrderShopUp.say("started a Redis Cluster: \(o.primaries) primaries, \(replicas) replica\(replicas == 1 ? "" : "s") (append-only) on \(cluster.addresses.joined(separator: ", ")); \(cluster.url)")
        use(try RedisConfiguration(url: cluster.url))
        do {
            try await untilShutdown(watching: cluster.nodes, cluster: cluster)
        } catch {
            await cluster.shutdown()
            OrderShopUp.say("Redis Cluster stopped")
            throw error
        }
        await cluster.shutdown()
        OrderShopUp.say("Redis Cluster stopped")
    }

    /// Waits for the graceful shutdown, watching the Redis children meanwhile (every second):
    /// before, one that died (OOM-killed, `kill -9` by hand) went unsaid, and the shop answered
    /// 503 with nothing in `up`'s output to tell why. The single redis-server's death ends `up`
    /// (non-zero, one line naming it and the end of its log): nothing works without it. A
    /// cluster node's is a warning, and `up` goes on while every shard still has a primary
    /// (its replica promoted): it ends once a shard has none some seconds after a death (a
    /// primary and its replica both gone: a third of the slots lost), or every node is gone.
    private func untilShutdown(watching nodes: [LocalRedisServer], cluster: LocalRedisCluster?) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await gracefulShutdown() }
            group.addTask { [logger] in
                var gone: Set<Int> = []
                while true {
                    try await Task.sleep(for: .seconds(1))
                    for (i, node) in nodes.enumerated() where !gone.contains(i) && node.pid == nil {
                        gone.insert(i)
                        let log = node.logTail(lines: 2).split(separator: "\n").joined(separator: " | ")
                        // Without replicas every node is a primary that nothing replaces.
                        guard let cluster, gone.count < nodes.count, cluster.options.replicasPerPrimary > 0 else {
                            let death = RedisChildExited(description: "redis-server on 127.0.0.1:\(node.port) exited (its log ends: \(log)); the shop cannot work without it")
                            // Said now: the shop's drain against a dead Redis takes its deadline
                            // before the group's last line repeats it as the exit's reason.
                            logger.error("\(death.description); stopping")
                            throw death
                        }
                        logger.warning("Redis Cluster node 127.0.0.1:\(node.port) exited; if it was a primary, its replica takes over (\(nodes.count - gone.count) of \(nodes.count) nodes left; its log ends: \(log))")
                        // Twice the node timeout and a margin: the election is over by then.
                        try await Task.sleep(for: cluster.options.nodeTimeout * 2 + .seconds(2))
                        if let lost = await Self.shardWithoutPrimary(cluster, dead: gone) {
                            let death = RedisChildExited(description: "the embedded Redis Cluster lost a shard: \(lost); the shop cannot work without it")
                            logger.error("\(death.description); stopping")
                            throw death
                        }
                    }
                }
            }
            // The first to end: the shutdown (the watcher is then cancelled) or a death.
            try await group.next()
            group.cancelAll()
        }
    }

    /// A shard (with slots) whose primary is dead or not online, as a live node sees it; nil
    /// when every shard has one, or no live node answers.
    private static func shardWithoutPrimary(_ cluster: LocalRedisCluster, dead: Set<Int>) async -> String? {
        guard let shards = try? await cluster.shards(avoiding: dead) else { return nil }
        for shard in shards where !shard.slots.isEmpty {
            let slots = shard.slots.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
            guard let primary = shard.primary, primary.health == "online" else { return "no primary serves slots \(slots)" }
            if let port = primary.port ?? primary.tlsPort, let index = cluster.index(ofPort: port), dead.contains(index) {
                return "slots \(slots) are on 127.0.0.1:\(port), which exited, and no replica was promoted"
            }
        }
        return nil
    }

    private func use(_ configuration: RedisConfiguration) {
        chosen.withLock { $0 = configuration }
        ready.arrive()
    }
}

/// The shop of `ordershop up`: every service and worker (``ShopStack``) in a group of its own
/// inside the process's group, which passes its graceful shutdown and cancellation on.
struct UpShop: Service {
    let redis: UpRedis
    let options: ShopStack.Options
    let logger: Logger

    func run() async throws {
        guard let configuration = redis.configuration else { return }
        var stackOptions = options
        let announce = stackOptions.onServiceRunning
        let host = stackOptions.host == "0.0.0.0" ? "127.0.0.1" : stackOptions.host
        let shown = stackOptions
        let listening = Mutex<[ServiceName: Int]>([:])
        stackOptions.onServiceRunning = { service, port in
            await announce(service, port)
            listening.withLock { $0[service] = port }
        }
        // Announced once every listener is bound, the metrics' included, so that whoever waits
        // for the line can use them all (with a taken --metrics-port, "OrderShop is up" came
        // before the line saying why `up` stops: a user-style test).
        stackOptions.onAllListening = {
            let all = listening.withLock { $0 }
            OrderShopUp.say("OrderShop is up: gateway http://\(host):\(all[.gateway] ?? 0)")
            OrderShopUp.say(OrderShopUp.summary(shown, ports: all))
            OrderShopUp.say("Ctrl-C stops everything.")
        }
        // A Redis that refuses this process (a password, a certificate, a CA; a Redis of one's
        // own given with --url) is said in one line before anything listens, as `serve` does:
        // before, seven "listening" lines and "OrderShop is up" came first (a user-style pass).
        let probe = try makeRedisClient(configuration, maximumConnections: 1, logger: logger)
        do {
            try await RedisReadiness.refuseIfUnusable(probe, at: configuration)
            // A Redis of one's own that may evict keys, said before anything listens; a Redis
            // that does not answer yet is asked again by each worker once it does.
            try await EvictionPolicyCheck.check(probe, at: configuration, within: .seconds(2), logger: logger)
        } catch {
            await probe.shutdown()
            throw error
        }
        await probe.shutdown()
        if stackOptions.metricsPort != nil { _ = WorkerMetrics.registry }
        let httpClient = makeHTTPClient()
        let stack: ShopStack
        do {
            stack = try ShopStack(redis: configuration, httpClient: httpClient, options: stackOptions, logger: logger)
        } catch {
            try? await httpClient.shutdown()
            throw error
        }
        do {
            try await processServiceGroup(stack.services, logger: logger).run()
        } catch {
            await stack.shutdown()
            try? await httpClient.shutdown()
            throw error
        }
        await stack.shutdown()
        try? await httpClient.shutdown()
        OrderShopUp.say("services and workers stopped")
    }
}

/// The redis-server child of `ordershop up` died while the shop ran.
struct RedisChildExited: Error, CustomStringConvertible {
    let description: String
}
