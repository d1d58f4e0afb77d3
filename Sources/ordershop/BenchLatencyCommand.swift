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
    @Option(
        help: """
            Settle modes to measure (idempotent adds the marker pre-check, one round trip before the handler;             plain is what the peer does). Figures of plain mode are named latency.<rate>per_s.plain.<q>.
            """)
    var settle: [String] = ["idempotent", "plain"]

    func run() async throws {
        let modes = try settle.map { name in
            guard let mode = SettleMode(rawValue: name) else { throw ValidationError("--settle must be plain or idempotent") }
            return mode
        }
        let peers = try await options.peerRunner()
        var results = BenchResults()
        for run in 1...options.runs {
            try await BenchEnvironment.with(peers: peers) { env in
                var ours: [(SettleMode, LatencyBench.Result)] = []
                for mode in modes {
                    benchLog("run \(run): ours (\(mode.rawValue)), \(events) events at \(Int(rate))/s")
                    let result = try await LatencyBench(env: env).run(.init(events: events, rate: rate, settle: mode))
                    if result.maxBehindScheduleMs > 5 {
                        benchLog("our publisher fell \(String(format: "%.1f", result.maxBehindScheduleMs)) ms behind its schedule")
                    }
                    ours.append((mode, result))
                }
                var peer: [String: Any]?
                if let peers = env.peers {
                    try await env.flush()
                    benchLog("run \(run): peer redispy_latency")
                    peer = try await peers.run(
                        "redispy_latency.py", port: env.port, ["--events", "\(events)", "--rate", "\(rate)", "--stream", "peer:latency"])
                }
                for (mode, result) in ours {
                    let prefix = "latency.\(Int(rate))per_s" + (mode == .idempotent ? "" : ".\(mode.rawValue)")
                    for (q, key, name) in [(50.0, "p50_ms", "p50"), (99, "p99_ms", "p99"), (99.9, "p999_ms", "p99.9"), (100, "max_ms", "max")] {
                        results.add(
                            BenchFigure(
                                name: "\(prefix).\(name)", unit: "ms", ours: result.p(q),
                                peer: try peer.map { try PeerRunner.number($0, key) }))
                    }
                }
            }
        }
        results.print(
            json: options.json,
            title: "latency: publish to handler start, \(events) events at \(Int(rate))/s, settle \(settle.joined(separator: " and ")); ratio = ours/peer (below 1: ours faster)")
    }
}
