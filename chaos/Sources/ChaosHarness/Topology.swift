import AsyncHTTPClient
import Foundation
import LocalRedis
import Logging
import NIOCore

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
    public enum WorkerState: Sendable { case running, paused, stopped }

    struct Worker {
        var incarnation: WorkerIncarnation
        var process: ChildProcess?
        var state: WorkerState
    }

    let options: ChaosOptions
    let logger: Logger
    public nonisolated let redis: LocalRedisServer
    public nonisolated let proxy: TCPProxy
    public nonisolated let servicePorts: [String: Int]
    public nonisolated let logDirectory: String
    private var services: [String: ChildProcess] = [:]
    private var workers: [String: Worker] = [:]
    private var incarnationCount: [String: Int] = [:]
    /// Slots a fault is working on (so that two faults never pick the same worker at once).
    private var reserved: Set<String> = []
    /// Every incarnation ever started, for the metrics and the report.
    public private(set) var incarnations: [WorkerIncarnation] = []

    public nonisolated var gatewayURL: String { "http://127.0.0.1:\(servicePorts["gateway"]!)" }

    public static let serviceNames = ["msg", "customer", "product", "inventory", "order", "billing", "gateway"]

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
        redis = try await LocalRedisServer(redisOptions)
        ChildRegistry.add(redis.pid)
        proxy = try TCPProxy(targetPort: redis.port)
        var ports: [String: Int] = [:]
        for name in Self.serviceNames { ports[name] = try LocalRedisServer.freePort() }
        servicePorts = ports
    }

    /// The environment every ordershop process gets: where the services are.
    private nonisolated var serviceEnvironment: [String: String] {
        var env: [String: String] = ["LOG_LEVEL": "info"]
        for name in Self.serviceNames where name != "gateway" {
            env["\(name.uppercased())_SERVICE_URL"] = "http://127.0.0.1:\(servicePorts[name]!)"
        }
        return env
    }

    /// Starts the services (straight to Redis) and the workers (through the proxy), and waits
    /// until every one answers /healthz.
    public func start(http: HTTPClient) async throws {
        for name in Self.serviceNames {
            services[name] = try ChildProcess(
                options.ordershop,
                ["serve", name, "--host", "127.0.0.1", "--port", String(servicePorts[name]!), "--url", redis.url],
                environment: serviceEnvironment, outputFile: "\(logDirectory)/\(name).log")
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
            "--lease-seconds", String(options.leaseSeconds), "--url", "redis://127.0.0.1:\(proxy.port)",
        ]
        if let bug = options.plantedBug { args += ["--planted-bug", bug.rawValue] }
        let process = try ChildProcess(options.ordershop, args, environment: serviceEnvironment, outputFile: "\(logDirectory)/\(key).log")
        ChildRegistry.add(process.pid)
        let incarnation = WorkerIncarnation(kind: kind, slot: slot, number: n, consumer: consumer, metricsPort: port, pid: process.pid)
        workers[key] = Worker(incarnation: incarnation, process: process, state: .running)
        incarnations.append(incarnation)
        return incarnation
    }

    public func worker(kind: String, slot: Int) -> (incarnation: WorkerIncarnation, state: WorkerState)? {
        guard let w = workers[Self.key(kind, slot)] else { return nil }
        // A worker that exited on its own counts as stopped.
        if w.state != .stopped, w.process?.isRunning != true { return (w.incarnation, .stopped) }
        return (w.incarnation, w.state)
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
        workers.values.filter { $0.state != .stopped && $0.process?.isRunning == true }.map(\.incarnation)
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

    /// After the load: every paused worker continued, every stopped one restarted.
    public func restoreAll() throws -> [String] {
        var actions: [String] = []
        for (key, w) in workers.sorted(by: { $0.key < $1.key }) {
            if w.state == .paused {
                w.process?.signal(SIGCONT)
                workers[key]?.state = .running
                actions.append("continued \(w.incarnation.consumer)")
            } else if w.state == .stopped || w.process?.isRunning != true {
                let i = try startWorker(kind: w.incarnation.kind, slot: w.incarnation.slot)
                actions.append("restarted \(i.consumer)")
            }
        }
        return actions
    }

    /// Processes that died without being told to (a crash is a finding).
    public func unexpectedExits() -> [String] {
        var out: [String] = []
        for (name, p) in services where !p.isRunning { out.append("service \(name) exited with status \(p.status ?? -1)") }
        for w in workers.values where w.state == .running && w.process?.isRunning != true {
            out.append("worker \(w.incarnation.consumer) exited with status \(w.process?.status ?? -1)")
        }
        return out
    }

    /// Stops everything: workers and services with SIGTERM, then Redis and the proxy.
    public func shutdown(removeData: Bool) async {
        for w in workers.values { w.process?.signal(SIGCONT) }
        await withTaskGroup(of: Void.self) { group in
            for w in workers.values { if let p = w.process { group.addTask { await p.stop(signal: SIGTERM, grace: .seconds(20)) } } }
            for p in services.values { group.addTask { await p.stop(signal: SIGTERM, grace: .seconds(20)) } }
        }
        proxy.stop()
        await redis.stop()
        if removeData { try? FileManager.default.removeItem(atPath: redis.directory) }
    }
}
