import ArgumentParser
import Foundation
import LocalRedis

/// `ordershop bench gateway`: `GET /customers` and `POST /customers` through the gateway, 8
/// connections for 10 s each, with wrk: requests/s, p50, p99. The gateway is `ordershop up`
/// started as a child against a fresh redis-server, or the one at `--gateway`. No peer: there
/// is no Python gateway among the peers, so `peer` is null.
///
/// `--cluster`: `ordershop up` on a 3-primary Redis Cluster the bench starts, with
/// `--cluster-replicas` replicas per primary (1 by default: the 3+3 of `up --cluster`) and the
/// one node's settings (no append-only file), so that the two differ only in the cluster
/// (figures `gateway.cluster.*`, `gateway.cluster_no_replicas.*` with 0; the servers' CPU
/// summed as `cpu_redis`).
///
/// `ordershop up` calls its own services in-process (``InProcessServices``); `--calls both`
/// (the default) also measures it with `--http-between-services`, as separate processes call
/// each other, in the same run: figures `gateway.http_between_services.*`.
struct BenchGatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Gateway throughput and latency (GET and POST /customers) with wrk."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Use this running gateway (http://host:port) instead of starting ordershop up.") var gateway: String?
    @Option(help: "Concurrent connections.") var concurrency = 8
    @Option(help: "Seconds per figure.") var seconds = 10
    @Option(help: "Customers created before GET /customers is measured.") var seed = 100
    @Option(help: "How the started ordershop up calls its services: in-process, http (--http-between-services), or both, each on a fresh Redis.")
    var calls: Calls = .both
    @Flag(help: "Run ordershop up on a 3-primary Redis Cluster (started by the bench, as the one redis-server is) instead of one redis-server.")
    var cluster = false
    @Option(parsing: .number, help: "Replicas per primary of the --cluster: 1 (as ordershop up --cluster; the default) or 0.")
    var clusterReplicas: Int?

    enum Calls: String, ExpressibleByArgument, CaseIterable {
        case inProcess = "in-process", http, both

        /// The modes measured: figure prefix and `ordershop up` arguments.
        var modes: [(prefix: String, arguments: [String])] {
            let inProcess = ("gateway", [String]()), http = ("gateway.http_between_services", ["--http-between-services"])
            switch self {
            case .inProcess: return [inProcess]
            case .http: return [http]
            case .both: return [inProcess, http]
            }
        }
    }

    func validate() throws {
        if gateway != nil && calls != .both { throw ValidationError("--calls is for the ordershop up the bench starts, not for --gateway") }
        if gateway != nil && cluster { throw ValidationError("--cluster is for the ordershop up the bench starts, not for --gateway") }
        if let clusterReplicas {
            guard cluster else { throw ValidationError("--cluster-replicas is for --cluster") }
            guard (0...1).contains(clusterReplicas) else { throw ValidationError("--cluster-replicas \(clusterReplicas): 0 or 1") }
        }
    }

    func run() async throws {
        // Before any Redis or `up` is started: the tools each run needs.
        for tool in ["wrk", "curl"] { _ = try GatewayBench.tool(tool) }
        var results = BenchResults()
        let topology = cluster ? (clusterReplicas == 0 ? ".cluster_no_replicas" : ".cluster") : ""
        let modes = gateway == nil ? calls.modes.map { ($0.prefix + topology, $0.arguments) } : [("gateway", [])]
        for run in 1...options.runs {
            for (prefix, arguments) in modes {
                try await measure(run: run, prefix: prefix, upArguments: arguments, into: &results)
            }
        }
        results.print(
            json: options.json,
            title: "gateway: wrk, \(concurrency) connections, \(seconds) s per figure; GET over \(seed) seeded customers; no Python gateway peer")
    }

    /// One run of one mode: GET then POST /customers, on a fresh Redis (one server, or the
    /// cluster of `--cluster`).
    private func measure(run: Int, prefix: String, upArguments: [String], into results: inout BenchResults) async throws {
        try await BenchEnvironment.with(peers: nil) { env in
            guard cluster else { return try await measure(run: run, prefix: prefix, upArguments: upArguments, redis: (env.url, env.server.pid.map { [$0] }), env: env, into: &results) }
            var options = LocalRedisCluster.Options()
            options.replicasPerPrimary = clusterReplicas ?? 1
            benchLog("run \(run): starting a Redis Cluster (3 primaries, \(options.replicasPerPrimary) replica(s) each)")
            let redisCluster = try await LocalRedisCluster(options)
            do {
                try await measure(run: run, prefix: prefix, upArguments: upArguments, redis: (redisCluster.url, redisCluster.nodes.compactMap(\.pid)), env: env, into: &results)
            } catch {
                await redisCluster.shutdown()
                throw error
            }
            await redisCluster.shutdown()
        }
    }

    /// One run of one mode on the Redis at `redis.url`, whose servers are `redis.pids` (nil when
    /// not known: then no `cpu_redis` figure, rather than a false 0).
    private func measure(
        run: Int, prefix: String, upArguments: [String], redis: (url: String, pids: [pid_t]?), env: BenchEnvironment, into results: inout BenchResults
    ) async throws {
        var started: GatewayUnderTest?
        let baseURL: String
        if let gateway {
            baseURL = gateway
        } else {
            benchLog("run \(run): starting ordershop up \(upArguments.joined(separator: " "))")
            started = try await GatewayUnderTest.start(executable: env.executable, redisURL: redis.url, arguments: upArguments)
            baseURL = started!.baseURL
        }
        do {
            let bench = GatewayBench(baseURL: baseURL)
            let o = GatewayBench.Options(connections: concurrency, seconds: seconds, seedCustomers: seed)
            if run == 1 || started != nil { try await bench.seed(seed) }
            // What bounds each figure: the CPU per request of `ordershop up` (gateway,
            // services and workers), redis-server and wrk, and the machine's busy cores.
            // Only for a gateway of ours: another one's processes and Redis are not known.
            let meter = started.map { gateway in
                CPUBoundMeter(
                    processes: [("ordershop up", [gateway.process.pid])] + (redis.pids.flatMap { $0.isEmpty ? nil : [("redis-server", $0)] } ?? []),
                    exitedChildren: "wrk")
            }
            func measured(_ body: () async throws -> GatewayBench.Figures) async throws -> (GatewayBench.Figures, CPUBound?) {
                guard let meter else { return (try await body(), nil) }
                let (figures, bound) = try await meter.measure(body)
                return (figures, bound)
            }
            benchLog("run \(run): GET /customers")
            let get = try await measured { try await bench.get(o) }
            benchLog("run \(run): POST /customers")
            let post = try await measured { try await bench.post(o) }
            for (name, (f, bound)) in [("get", get), ("post", post)] {
                if f.errors > 0 { results.note("\(prefix) \(name): \(f.errors) failed requests in run \(run)") }
                results.add(BenchFigure(name: "\(prefix).\(name)_customers.rps", unit: "req/s", ours: f.requestsPerSecond, peer: nil))
                results.add(BenchFigure(name: "\(prefix).\(name)_customers.p50", unit: "ms", ours: f.p50Ms, peer: nil))
                results.add(BenchFigure(name: "\(prefix).\(name)_customers.p99", unit: "ms", ours: f.p99Ms, peer: nil))
                guard let bound else { continue }
                for share in bound.shares {
                    let process = ["ordershop up": "up", "redis-server": "redis"][share.name] ?? share.name
                    results.add(
                        BenchFigure(name: "\(prefix).\(name)_customers.cpu_\(process)", unit: "µs/req", ours: bound.microsecondsPerRequest(share), peer: nil))
                }
                results.add(BenchFigure(name: "\(prefix).\(name)_customers.busy_cores", unit: "cores", ours: bound.machineCores, peer: nil))
                results.note("\(prefix) \(name) run \(run): \(Int(f.requestsPerSecond.rounded())) req/s; \(bound.summary)")
            }
        } catch {
            await started?.stop()
            throw error
        }
        await started?.stop()
    }
}
