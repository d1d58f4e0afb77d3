import AsyncHTTPClient
import Foundation
import LocalRedis
import Logging
import RedisClient
import ServiceLifecycle
import StreamWorker
import WorkerMetricsHTTP
import Synchronization

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
        public var stack: ShopStack.Options

        public init(redis: RedisConfiguration? = nil, dataDirectory: String? = nil, redisPort: Int = 6379, stack: ShopStack.Options = .init()) {
            self.redis = redis
            self.dataDirectory = dataDirectory
            self.redisPort = redisPort
            self.stack = stack
        }
    }

    /// Runs until SIGINT or SIGTERM, then stops everything in order and the redis child last.
    public static func run(_ options: Options, logger: Logger) async throws {
        var redis = options.redis
        var child: LocalRedisServer?
        if redis == nil {
            let local = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: options.redisPort))
            if await answers(local) {
                say("using the Redis already listening on 127.0.0.1:\(options.redisPort)")
            } else {
                var o = LocalRedisServer.Options()
                o.port = options.redisPort
                o.appendOnly = true
                o.directory = options.dataDirectory
                let server = try await LocalRedisServer(o)
                child = server
                say("started redis-server (pid \(server.pid.map(String.init) ?? "?"), append-only, data in \(server.directory)) on 127.0.0.1:\(server.port)")
            }
            redis = local
        }
        guard let redis else { return }

        let httpClient = makeHTTPClient()
        var stackOptions = options.stack
        let announce = stackOptions.onServiceRunning
        let host = stackOptions.host == "0.0.0.0" ? "127.0.0.1" : stackOptions.host
        let shown = stackOptions
        let listening = Mutex<[ServiceName: Int]>([:])
        stackOptions.onServiceRunning = { service, port in
            await announce(service, port)
            // Announce once every service listens, so that whoever waits for the line can use them all.
            let all = listening.withLock { ports -> [ServiceName: Int]? in
                ports[service] = port
                return ports.count == ServiceName.allCases.count ? ports : nil
            }
            guard let all else { return }
            say("OrderShop is up: gateway http://\(host):\(all[.gateway] ?? port)")
            say(Self.summary(shown, ports: all))
            say("Ctrl-C stops everything.")
        }
        if stackOptions.metricsPort != nil { _ = WorkerMetrics.registry }
        do {
            let stack = try ShopStack(redis: redis, httpClient: httpClient, options: stackOptions, logger: logger)
            let group = ServiceGroup(
                configuration: .init(
                    services: stack.services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger))
            do {
                try await group.run()
            } catch {
                await stack.shutdown()
                throw error
            }
            await stack.shutdown()
            say("services and workers stopped")
        } catch {
            try? await httpClient.shutdown()
            await child?.shutdown()
            throw error
        }
        try? await httpClient.shutdown()
        if let child {
            await child.shutdown()
            say("redis-server stopped")
        }
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
