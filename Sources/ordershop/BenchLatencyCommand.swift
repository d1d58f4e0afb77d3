import ArgumentParser
import StreamWorker

/// `ordershop bench latency`: publish to handler start at a fixed rate (default 1,000 events/s
/// for 10 s): p50, p99, p99.9 and max, beside the peer's `redispy_latency.py`.
struct BenchLatencyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "End-to-end latency (publish to handler start) at a fixed rate against the redis-py peer."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Events per measurement.") var events = 10_000
    @Option(help: "Events per second.") var rate = 1000.0
    @Option(help: "Settle mode of the worker.") var settle = "idempotent"

    func run() async throws {
        guard let mode = SettleMode(rawValue: settle) else { throw ValidationError("--settle must be plain or idempotent") }
        let peers = try await options.peerRunner()
        var results = BenchResults()
        for run in 1...options.runs {
            try await BenchEnvironment.with(peers: peers) { env in
                benchLog("run \(run): ours, \(events) events at \(Int(rate))/s")
                let ours = try await LatencyBench(env: env).run(.init(events: events, rate: rate, settle: mode))
                if ours.maxBehindScheduleMs > 5 {
                    benchLog("our publisher fell \(String(format: "%.1f", ours.maxBehindScheduleMs)) ms behind its schedule")
                }
                var peer: [String: Any]?
                if let peers = env.peers {
                    try await env.flush()
                    benchLog("run \(run): peer redispy_latency")
                    peer = try await peers.run(
                        "redispy_latency.py", port: env.port, ["--events", "\(events)", "--rate", "\(rate)", "--stream", "peer:latency"])
                }
                for (q, key, name) in [(50.0, "p50_ms", "p50"), (99, "p99_ms", "p99"), (99.9, "p999_ms", "p99.9"), (100, "max_ms", "max")] {
                    results.add(
                        BenchFigure(
                            name: "latency.\(Int(rate))per_s.\(name)", unit: "ms", ours: ours.p(q),
                            peer: try peer.map { try PeerRunner.number($0, key) }))
                }
            }
        }
        results.print(
            json: options.json,
            title: "latency: publish to handler start, \(events) events at \(Int(rate))/s, settle \(settle); ratio = ours/peer (below 1: ours faster)")
    }
}
