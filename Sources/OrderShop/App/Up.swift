import Foundation
import Logging
import RedisClient
import ServiceLifecycle

/// `ordershop up`: the whole shop in one process, with a Redis of its own when none is configured.
public enum OrderShopUp {
    public struct Options: Sendable {
        /// The Redis to use; nil: 127.0.0.1:6379 if something answers there, else a `redis-server`
        /// child started on that port (append-only file on) and stopped on exit.
        public var redis: RedisConfiguration?
        /// Where the child keeps its data; nil: a temporary directory, removed on exit.
        public var dataDirectory: String?
        /// The port of the child redis-server (and of the probe).
        public var redisPort: Int
        /// Start an embedded Redis Cluster (3 primaries, ``clusterReplicas`` replicas each,
        /// append-only, on free ports, data removed on exit) instead of one redis-server.
        public var cluster: Bool
        /// Replicas per primary of the embedded cluster: 1 (a primary's death is survived: its
        /// replica is promoted), or 0 (three redis-servers instead of six, where cores are few;
        /// a primary's death then ends `up`, as the one server's does).
        public var clusterReplicas: Int
        /// The embedded cluster's first port (``LocalRedisCluster/Options/firstPort``: its nodes
        /// on the next ones, then their bus ports); nil: free ports.
        public var clusterFirstPort: Int?
        public var stack: ShopStack.Options

        public init(
            redis: RedisConfiguration? = nil, dataDirectory: String? = nil, redisPort: Int = 6379, cluster: Bool = false, clusterReplicas: Int = 1,
            clusterFirstPort: Int? = nil, stack: ShopStack.Options = .init()
        ) {
            self.clusterFirstPort = clusterFirstPort
            self.redis = redis
            self.dataDirectory = dataDirectory
            self.redisPort = redisPort
            self.cluster = cluster
            self.clusterReplicas = clusterReplicas
            self.stack = stack
        }
    }

    /// Runs until SIGINT or SIGTERM, then stops everything in order and the redis child last.
    ///
    /// Every part runs in one service group that traps the signals from the start: the Redis
    /// (found or started) first, so that it stops last, then the shop. Whatever ends the group (a
    /// signal, a second signal, a port that is taken, a Redis that refuses the password, a
    /// failure while starting) stops the redis-server child and removes its temporary directory.
    ///
    /// `tracing` (``ShopTracing/bootstrap(serviceName:environment:logger:)``) runs first in the
    /// group, so that it stops last, after the shop's last spans.
    public static func run(_ options: Options, tracing: (any Service)? = nil, logger: Logger) async throws {
        let redis = UpRedis(options: options, logger: logger)
        let shop = UpShop(redis: redis, options: options.stack, logger: logger)
        let group = processServiceGroup(
            (tracing.map { [SupervisedService("tracing", $0)] } ?? [])
                + [SupervisedService("redis-server", redis), SupervisedService("shop", StartsWhenReady(shop) { try await redis.ready.wait() })],
            logger: logger, maximumGracefulShutdown: options.stack.workerConfiguration.drainDeadline + .seconds(10))
        try await runUntilSignalled(group, logger: logger)
        say("stopped")
    }

    static func summary(_ o: ShopStack.Options, ports: [ServiceName: Int]) -> String {
        let services = ServiceName.allCases.filter { $0 != .gateway }.map { "\($0) :\(ports[$0] ?? 0)" }.joined(separator: ", ")
        var s = "services: \(services)"
        if !o.workers.isEmpty {
            s += "\nworkers: \(o.workers.map(\.rawValue).joined(separator: ", "))"
            if let m = o.metricsPort { s += " (metrics :\(m)/metrics)" }
            if o.adminRoutes, o.adminToken?.isEmpty == false { s += "\nadmin: POST /admin/workers/<crm|billing>/<stop|start> on the gateway" }
        }
        if o.dashboard {
            let token = o.adminToken?.isEmpty == false
            s += "\ndashboard: /dashboard on the gateway"
            if !token { s += Dashboard.isLoopback(o.host) ? " (replay and purge off: no admin token)" : " (off: not on loopback and no admin token)" }
        }
        return s
    }

    /// Whether a Redis answers PING there (one attempt, short timeouts).
    static func answers(_ configuration: RedisConfiguration) async -> Bool {
        var c = configuration
        c.reconnect.retryWindow = .zero
        c.timeouts.connect = .seconds(1)
        c.timeouts.command = .seconds(2)
        guard let connection = try? RedisConnection(configuration: c) else { return false }
        let ok = (try? await connection.send(PING())) != nil
        await connection.close()
        return ok
    }

    /// A line on stdout, flushed at once (a script waiting for the URL sees it immediately).
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
