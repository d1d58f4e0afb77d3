import ArgumentParser

/// `ordershop bench gateway`: `GET /customers` and `POST /customers` through the gateway, 8
/// connections for 10 s each, with wrk: requests/s, p50, p99. The gateway is `ordershop up`
/// started as a child against a fresh redis-server, or the one at `--gateway`. No peer: there
/// is no Python gateway among the peers, so `peer` is null.
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

    func run() async throws {
        var results = BenchResults()
        for run in 1...options.runs {
            try await BenchEnvironment.with(peers: nil) { env in
                var started: GatewayUnderTest?
                let baseURL: String
                if let gateway {
                    baseURL = gateway
                } else {
                    benchLog("run \(run): starting ordershop up")
                    started = try await GatewayUnderTest.start(executable: env.executable, redisURL: env.url)
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
                            processes: [("ordershop up", gateway.process.pid)] + (env.server.pid.map { [("redis-server", $0)] } ?? []),
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
                        if f.errors > 0 { results.note("\(name): \(f.errors) failed requests in run \(run)") }
                        results.add(BenchFigure(name: "gateway.\(name)_customers.rps", unit: "req/s", ours: f.requestsPerSecond, peer: nil))
                        results.add(BenchFigure(name: "gateway.\(name)_customers.p50", unit: "ms", ours: f.p50Ms, peer: nil))
                        results.add(BenchFigure(name: "gateway.\(name)_customers.p99", unit: "ms", ours: f.p99Ms, peer: nil))
                        guard let bound else { continue }
                        for share in bound.shares {
                            let process = ["ordershop up": "up", "redis-server": "redis"][share.name] ?? share.name
                            results.add(
                                BenchFigure(name: "gateway.\(name)_customers.cpu_\(process)", unit: "µs/req", ours: bound.microsecondsPerRequest(share), peer: nil))
                        }
                        results.add(BenchFigure(name: "gateway.\(name)_customers.busy_cores", unit: "cores", ours: bound.machineCores, peer: nil))
                        results.note("\(name) run \(run): \(Int(f.requestsPerSecond.rounded())) req/s; \(bound.summary)")
                    }
                } catch {
                    await started?.stop()
                    throw error
                }
                await started?.stop()
            }
        }
        results.print(
            json: options.json,
            title: "gateway: wrk, \(concurrency) connections, \(seconds) s per figure; GET over \(seed) seeded customers; no Python gateway peer")
    }
}
