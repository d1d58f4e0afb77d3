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
                    benchLog("run \(run): GET /customers")
                    let get = try await bench.get(o)
                    benchLog("run \(run): POST /customers")
                    let post = try await bench.post(o)
                    for (name, f) in [("get", get), ("post", post)] {
                        if f.errors > 0 { results.note("\(name): \(f.errors) failed requests in run \(run)") }
                        results.add(BenchFigure(name: "gateway.\(name)_customers.rps", unit: "req/s", ours: f.requestsPerSecond, peer: nil))
                        results.add(BenchFigure(name: "gateway.\(name)_customers.p50", unit: "ms", ours: f.p50Ms, peer: nil))
                        results.add(BenchFigure(name: "gateway.\(name)_customers.p99", unit: "ms", ours: f.p99Ms, peer: nil))
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
