import AsyncHTTPClient
import FaultProxy
import Foundation
import LocalRedis
import Logging
import NIOCore
import RedisClient

/// One worker process slot (`crm` 0..K-1, `billing` 0..K-1). Each start is a new incarnation with
/// its own consumer name (`<kind>-<slot>-i<n>`) and metrics port, so that its counters and its
/// pending entries can be told apart from its predecessor's.
public struct WorkerIncarnation: Sendable, Hashable, Codable {
    public var kind: String
    public var slot: Int
    public var number: Int
    public var consumer: String
    public var metricsPort: Int
    public var pid: Int32
}

/// The processes of a run, all on loopback: redis-server, the harness's proxy, the seven HTTP
/// services (`ordershop serve`), and K crm and K billing workers (`ordershop work`) that reach
/// Redis only through the proxy.
public actor Topology {
    public enum WorkerState: Sendable {
        case running, paused
        /// A fault stopped it (SIGKILL, SIGTERM).
        case stopped
        /// It exited when nothing asked it to (recorded in ``exits``).
        case crashed
    }

    struct Worker {
        var incarnation: WorkerIncarnation
        var process: ChildProcess?
        var state: WorkerState
    }

    let options: ChaosOptions
    let logger: Logger
    /// The Redis server (single), the first primary of ``replication``, or the cluster's first node.
    public nonisolated let redis: LocalRedisServer
    /// Cluster topology: 3 primaries with a replica each.
    public nonisolated let cluster: LocalRedisCluster?
    /// Cluster topology: the proxies in front of every node (``ClusterNetwork``).
    public nonisolated let clusterNetwork: ClusterNetwork?
    /// Replicated topology: the primary and its replica.
    public nonisolated let replication: LocalRedisReplication?
    /// Replicated topology: the endpoint the services, the tools and the harness use, moved to
    /// the promoted replica on a failover (a managed service's DNS name).
    public nonisolated let endpoint: TCPProxy?
    /// Replicated topology: the replica's link to the primary (a proxy, cut by the partition fault).
    public nonisolated let replicationLink: TCPProxy?
    /// The workers' way to Redis, with network faults; on a failover it moves too. Not used in
    /// the cluster topology: there the workers reach each node at the address the cluster
    /// announces (``clusterNetwork``).
    public nonisolated let proxy: TCPProxy

    /// The proxies the network faults (`reset`, `stall`, `latency`) act on: the workers' way to
    /// Redis, or in the cluster every node's client proxy, which every client passes (services,
    /// workers and tools alike) and the replicas' links too.
    public nonisolated var faultProxies: [TCPProxy] { clusterNetwork?.nodes.map(\.client) ?? [proxy] }

    /// Whose connections ``faultProxies`` carry, for the faults' notes.
    nonisolated var faultProxyClients: String { cluster == nil ? "worker" : "client" }
    public nonisolated let servicePorts: [String: Int]
    public nonisolated let logDirectory: String
    private var services: [String: ChildProcess] = [:]
    private var workers: [String: Worker] = [:]
    private var incarnationCount: [String: Int] = [:]
    /// Slots a fault is working on (so that two faults never pick the same worker at once).
    private var reserved: Set<String> = []
    /// Every incarnation ever started, for the metrics and the report.
    public private(set) var incarnations: [WorkerIncarnation] = []
    /// Every exit no fault asked for, and every non-zero exit after SIGTERM: each a violation.
    public private(set) var unexpectedExits: [String] = []
    /// Services already reported as exited, or stopped by a fault.
    private var exitedServices: Set<String> = []
    /// Operations tools run so far (for their log file names).
    private var toolRuns = 0

    public nonisolated var gatewayURL: String { "http://127.0.0.1:\(servicePorts["gateway"]!)" }

    /// Where the services, the tools and the harness reach Redis: the server, the endpoint, or
    /// the cluster (every node a seed, `?cluster=yes`).
    public nonisolated var redisURL: String { cluster?.url ?? endpoint.map { "redis://127.0.0.1:\($0.port)" } ?? redis.url }

    /// Where the workers reach Redis: through the proxy, or (cluster) the cluster itself.
    public nonisolated var workerRedisURL: String { cluster?.url ?? "redis://127.0.0.1:\(proxy.port)" }

    /// The harness's own client configuration (straight to Redis, through the endpoint, or the cluster).
    public nonisolated let harnessConfiguration: RedisConfiguration

    /// `serve` arguments for a service: where Redis is, and in the replicated topology the
    /// confirmation every command must get (2xx only once the replica has its writes).
    private nonisolated func serveArguments(_ name: String) -> [String] {
        let service = name == Self.standbyOrderService ? "order" : name
        var a = ["serve", service, "--host", "127.0.0.1", "--port", String(servicePorts[name]!), "--url", redisURL]
        a += Self.confirmationArguments(options, service: true)
        if options.partitions > 1 { a += ["--partitions", String(options.partitions)] }
        if let bug = options.plantedBug, bug.service == service { a += ["--planted-bug", bug.rawValue] }
        if service == "order" {
            // 25 ms between reserving the stock and making the order: an order-crash SIGKILL
            // finds changes there (a change takes about 1 ms without it).
            a += ["--chaos-step-pause-ms", "25"]
        }
        return a
    }

    /// With replicas (replicated, cluster): every service and worker confirms with one replica,
    /// waiting up to 2 s; the planted `unconfirmed-writes` leaves the services without it.
    static func confirmationArguments(_ options: ChaosOptions, service: Bool) -> [String] {
        guard options.topology.hasReplicas, !(service && options.plantedBug == .unconfirmedWrites) else { return [] }
        return ["--confirm-replicas", "1", "--confirm-timeout", "2000"]
    }

    /// A second order service, as a deployment runs two of each: the gateway sends it nothing,
    /// but its reservation reaper works, so that reservations left by a paused `order` are
    /// ended meanwhile (``FaultKind/orderPause``).
    public static let standbyOrderService = "order-standby"
    public static let serviceNames = ["msg", "customer", "product", "inventory", "order", standbyOrderService, "billing", "gateway"]

    public init(options: ChaosOptions, runDirectory: String, logger: Logger) async throws {
        self.options = options
        self.logger = logger
        logDirectory = runDirectory + "/logs"
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        var redisOptions = LocalRedisServer.Options()
        redisOptions.appendOnly = true
        redisOptions.appendFsync = "always"
        redisOptions.directory = runDirectory + "/redis"
        try? FileManager.default.removeItem(atPath: runDirectory + "/redis")
        switch options.topology {
        case .single:
            redis = try await LocalRedisServer(redisOptions)
            replication = nil
            cluster = nil
            clusterNetwork = nil
            endpoint = nil
            replicationLink = nil
        case .cluster:
            var clusterOptions = LocalRedisCluster.Options()
            clusterOptions.appendOnly = true
            clusterOptions.appendFsync = "always"
            clusterOptions.directory = runDirectory + "/redis"
            // A replica always stands for election, however long its link was down: a node
            // restarted after a kill may otherwise be refused as too stale, leaving its shard
            // without a primary when the next fault kills that one.
            clusterOptions.extraArguments = ["--cluster-replica-validity-factor", "0"]
            let network = try ClusterNetwork(count: clusterOptions.primaries * (1 + clusterOptions.replicasPerPrimary))
            clusterOptions.routes = network.routes
            clusterOptions.nodeStarted = { network.forward($0, port: $1, busPort: $2) }
            let c: LocalRedisCluster
            do { c = try await LocalRedisCluster(clusterOptions) } catch {
                network.stop()
                throw error
            }
            cluster = c
            clusterNetwork = network
            redis = c.nodes[0]
            replication = nil
            endpoint = nil
            replicationLink = nil
        case .replicated:
            let pair = try await LocalRedisReplication(replicas: 1, options: redisOptions)
            replication = pair
            cluster = nil
            clusterNetwork = nil
            redis = pair.servers[0]
            endpoint = try TCPProxy(targetPort: redis.port)
            let link = try TCPProxy(targetPort: redis.port)
            replicationLink = link
            try await pair.follow(link.port, on: 1)
            try await pair.waitUntilReplicasAttached()
        }
        for server in cluster?.nodes ?? replication?.servers ?? [redis] { ChildRegistry.add(server.pid) }
        proxy = try TCPProxy(targetPort: redis.port)
        var harness: RedisConfiguration
        if let cluster {
            harness = try RedisConfiguration(url: cluster.url)
        } else {
            harness = endpoint.map { RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: $0.port)) } ?? redis.configuration
        }
        harness.reconnect.retryWindow = .seconds(10)
        harnessConfiguration = harness
        var ports: [String: Int] = [:]
        for name in Self.serviceNames { ports[name] = try LocalRedisServer.freePort() }
        servicePorts = ports
    }

    /// The environment every ordershop process gets: where the services are.
    private nonisolated var serviceEnvironment: [String: String] {
        var env: [String: String] = ["LOG_LEVEL": "info"]
        for name in Self.serviceNames where name != "gateway" && name != Self.standbyOrderService {
            env["\(name.uppercased())_SERVICE_URL"] = "http://127.0.0.1:\(servicePorts[name]!)"
        }
        return env
    }

    /// Starts the services (straight to Redis) and the workers (through the proxy), and waits
    /// until every one answers /healthz.
    public func start(http: HTTPClient) async throws {
        for name in Self.serviceNames {
            services[name] = try ChildProcess(
                options.ordershop, serveArguments(name), environment: serviceEnvironment, outputFile: "\(logDirectory)/\(name).log")
            ChildRegistry.add(services[name]?.pid)
        }
        for name in Self.serviceNames {
            try await waitHealthy("http://127.0.0.1:\(servicePorts[name]!)/healthz", name: name, http: http, process: services[name]!)
        }
        for kind in ["crm", "billing"] {
            for slot in 0..<options.workersPerKind { try startWorker(kind: kind, slot: slot) }
        }
        for w in workers.values {
            try await waitHealthy("http://127.0.0.1:\(w.incarnation.metricsPort)/healthz", name: w.incarnation.consumer, http: http, process: w.process!)
        }
    }

    /// Stops a service with SIGTERM (a fault: its exit is expected, and must be status 0).
    public func stopService(_ name: String) async -> Int32? {
        guard let p = services[name], p.isRunning else { return nil }
        exitedServices.insert(name)
        let status = await p.stop(signal: SIGTERM, grace: .seconds(20))
        if status != 0 { unexpectedExits.append("service \(name) exited with status \(status) after SIGTERM (a graceful stop exits 0)") }
        return status
    }

    /// SIGSTOPs (or SIGCONTs) a service: a fault, it is still running.
    public func pauseService(_ name: String, _ pause: Bool) {
        services[name]?.signal(pause ? SIGSTOP : SIGCONT)
    }

    /// SIGKILLs a service (a fault: its exit is expected).
    public func killService(_ name: String) async {
        guard let p = services[name], p.isRunning else { return }
        exitedServices.insert(name)
        _ = await p.stop(signal: SIGKILL, grace: .seconds(5))
    }

    /// Starts a stopped service again on its port and waits until it answers /healthz.
    public func startService(_ name: String, http: HTTPClient) async throws {
        let process = try ChildProcess(
            options.ordershop, serveArguments(name), environment: serviceEnvironment, outputFile: "\(logDirectory)/\(name).log")
        ChildRegistry.add(process.pid)
        services[name] = process
        exitedServices.remove(name)
        try await waitHealthy("http://127.0.0.1:\(servicePorts[name]!)/healthz", name: name, http: http, process: process)
    }

    /// Runs an `ordershop` operations command to its end (straight to Redis, like an operator);
    /// its exit status and its whole output (stdout and stderr, from its log file).
    public func runTool(_ arguments: [String], timeout: Duration = .seconds(120)) async throws -> (status: Int32, output: String) {
        toolRuns += 1
        // With replicas, as a deployment's pods have it (the cluster overlays set it): `rebuild`
        // confirms its swap; the other tools ignore it.
        var environment = serviceEnvironment
        if options.topology.hasReplicas {
            environment["ORDERSHOP_CONFIRM_REPLICAS"] = "1"
            environment["ORDERSHOP_CONFIRM_TIMEOUT_MS"] = "2000"
        }
        // Its log is appended to (an earlier run in the same report directory wrote one of that
        // name): its own output starts at the size the file had.
        let log = "\(logDirectory)/tool-\(toolRuns)-\(arguments.first ?? "run").log"
        let earlier = ((try? FileManager.default.attributesOfItem(atPath: log))?[.size] as? Int) ?? 0
        let process = try ChildProcess(options.ordershop, arguments + ["--url", redisURL], environment: environment, outputFile: log)
        ChildRegistry.add(process.pid)
        guard let status = await process.waitForExit(timeout: timeout) else {
            let status = await process.stop(signal: SIGKILL, grace: .seconds(1))
            return (status, "did not finish within \(timeout); killed")
        }
        return (status, String(decoding: process.output.utf8.dropFirst(earlier), as: UTF8.self))
    }

    private func waitHealthy(_ url: String, name: String, http: HTTPClient, process: ChildProcess) async throws {
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(180) {
            guard process.isRunning else {
                throw ChaosError("\(name) exited at start: \(process.output.suffix(800))")
            }
            if let response = try? await http.execute(HTTPClientRequest(url: url), timeout: .seconds(2)), response.status.code == 200 {
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ChaosError("\(name) did not answer \(url) within 180 s")
    }

    private static func key(_ kind: String, _ slot: Int) -> String { "\(kind)-\(slot)" }

    /// Starts a new incarnation in a slot.
    @discardableResult
    public func startWorker(kind: String, slot: Int) throws -> WorkerIncarnation {
        let key = Self.key(kind, slot)
        let n = (incarnationCount[key] ?? 0) + 1
        incarnationCount[key] = n
        let consumer = "\(kind)-\(slot)-i\(n)"
        let port = try LocalRedisServer.freePort()
        var args = [
            "work", kind, "--metrics-port", String(port), "--metrics-host", "127.0.0.1", "--consumer", consumer,
            "--lease-seconds", String(options.leaseSeconds), "--url", workerRedisURL,
        ]
        if let bug = options.plantedBug, bug.isWorkerBug { args += ["--planted-bug", bug.rawValue] }
        args += Self.confirmationArguments(options, service: false)
        if options.partitions > 1 { args += ["--partitions", String(options.partitions)] }
        if options.pauseAfterMailMs > 0 { args += ["--chaos-pause-after-mail-ms", String(options.pauseAfterMailMs)] }
        let process = try ChildProcess(options.ordershop, args, environment: serviceEnvironment, outputFile: "\(logDirectory)/\(key).log")
        ChildRegistry.add(process.pid)
        let incarnation = WorkerIncarnation(kind: kind, slot: slot, number: n, consumer: consumer, metricsPort: port, pid: process.pid)
        workers[key] = Worker(incarnation: incarnation, process: process, state: .running)
        incarnations.append(incarnation)
        return incarnation
    }

    public func worker(kind: String, slot: Int) -> (incarnation: WorkerIncarnation, state: WorkerState)? {
        checkExits()
        guard let w = workers[Self.key(kind, slot)] else { return nil }
        return (w.incarnation, w.state)
    }

    /// Records every process that exited although no fault stopped it (called every second by
    /// the observer, and before anything is restarted, so that no crash is hidden by a restart).
    public func checkExits() {
        for (key, w) in workers where (w.state == .running || w.state == .paused) && w.process?.isRunning != true {
            unexpectedExits.append("worker \(w.incarnation.consumer) exited on its own with status \(w.process?.status ?? -1)")
            workers[key]?.state = .crashed
        }
        for (name, p) in services where !p.isRunning && !exitedServices.contains(name) {
            exitedServices.insert(name)
            unexpectedExits.append("service \(name) exited on its own with status \(p.status ?? -1)")
        }
    }

    /// A worker told to stop with SIGTERM must drain and exit 0.
    public func recordTermination(consumer: String, status: Int32?) {
        if let status, status != 0 {
            unexpectedExits.append("worker \(consumer) exited with status \(status) after SIGTERM (a graceful drain exits 0)")
        } else if status == nil {
            unexpectedExits.append("worker \(consumer) did not exit within 60 s of SIGTERM")
        }
    }

    /// Reserves a running, unreserved slot of a kind, starting at `preferred`; nil when none.
    public func reserve(kind: String, preferred: Int) -> (slot: Int, incarnation: WorkerIncarnation)? {
        for k in 0..<options.workersPerKind {
            let slot = (preferred + k) % options.workersPerKind
            let key = Self.key(kind, slot)
            guard !reserved.contains(key), let w = worker(kind: kind, slot: slot), w.state == .running else { continue }
            reserved.insert(key)
            return (slot, w.incarnation)
        }
        return nil
    }

    public func release(kind: String, slot: Int) { reserved.remove(Self.key(kind, slot)) }

    /// Incarnations alive now (running or paused).
    public func liveIncarnations() -> [WorkerIncarnation] {
        workers.values.filter { ($0.state == .running || $0.state == .paused) && $0.process?.isRunning == true }.map(\.incarnation)
    }

    /// Sends a signal to a slot's process and records the state it leaves the worker in.
    public func signal(kind: String, slot: Int, _ sig: Int32) {
        let key = Self.key(kind, slot)
        guard var w = workers[key], let p = w.process else { return }
        p.signal(sig)
        switch sig {
        case SIGSTOP: w.state = .paused
        case SIGCONT: w.state = .running
        case SIGKILL, SIGTERM: w.state = .stopped
        default: break
        }
        workers[key] = w
    }

    /// Waits for a slot's process to exit; its exit status, or nil on timeout.
    public func waitForExit(kind: String, slot: Int, timeout: Duration) async -> Int32? {
        guard let p = workers[Self.key(kind, slot)]?.process else { return nil }
        return await p.waitForExit(timeout: timeout)
    }

    /// After the load: every paused worker continued, every stopped (or crashed: recorded
    /// first) one restarted.
    public func restoreAll() throws -> [String] {
        checkExits()
        var actions: [String] = []
        for (key, w) in workers.sorted(by: { $0.key < $1.key }) {
            if w.state == .paused {
                w.process?.signal(SIGCONT)
                workers[key]?.state = .running
                actions.append("continued \(w.incarnation.consumer)")
            } else if w.state == .stopped || w.state == .crashed {
                let i = try startWorker(kind: w.incarnation.kind, slot: w.incarnation.slot)
                actions.append("restarted \(i.consumer)")
            }
        }
        return actions
    }

    /// Stops every worker and service with SIGTERM (after the check; they must drain and exit 0)
    /// and records any that crashed before or exited non-zero.
    public func stopProcesses() async {
        checkExits()
        for w in workers.values { w.process?.signal(SIGCONT) }
        let stopping = workers.values.filter { $0.state == .running || $0.state == .paused }.compactMap { w in w.process.map { (w.incarnation.consumer, $0) } }
            + services.filter { !exitedServices.contains($0.key) }.map { ("service \($0.key)", $0.value) }
        let statuses = await withTaskGroup(of: (String, Int32).self) { group in
            for (name, p) in stopping { group.addTask { (name, await p.stop(signal: SIGTERM, grace: .seconds(20))) } }
            var out: [(String, Int32)] = []
            for await s in group { out.append(s) }
            return out
        }
        for (name, status) in statuses.sorted(by: { $0.0 < $1.0 }) where status != 0 {
            unexpectedExits.append("\(name.hasPrefix("service") ? name : "worker " + name) exited with status \(status) after SIGTERM at the end of the run")
        }
        for key in workers.keys { workers[key]?.state = .stopped }
    }

    /// Stops whatever still runs, then Redis and the proxy.
    public func shutdown(removeData: Bool) async {
        for w in workers.values { w.process?.signal(SIGCONT) }
        await withTaskGroup(of: Void.self) { group in
            for w in workers.values { if let p = w.process { group.addTask { await p.stop(signal: SIGTERM, grace: .seconds(20)) } } }
            for p in services.values { group.addTask { await p.stop(signal: SIGTERM, grace: .seconds(20)) } }
        }
        proxy.stop()
        endpoint?.stop()
        replicationLink?.stop()
        clusterNetwork?.stop()
        if let cluster {
            await cluster.shutdown()
            if removeData { try? FileManager.default.removeItem(atPath: options.reportDirectory + "/redis") }
        } else if let replication {
            for server in replication.servers { await server.stop() }
            if removeData { try? FileManager.default.removeItem(atPath: options.reportDirectory + "/redis") }
        } else {
            await redis.stop()
            if removeData { try? FileManager.default.removeItem(atPath: redis.directory) }
        }
    }
}
