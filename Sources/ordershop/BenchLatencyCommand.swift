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
    @Option(help: "How the worker traces: env (as OTEL_* in this environment say), off, on (every span exported to a receiver the bench runs) or compare (off and on alternately, side by side).")
    var tracing: BenchTracing = .env

    func run() async throws {
        let modes = try settle.map { name in
            guard let mode = SettleMode(rawValue: name) else { throw ValidationError("--settle must be plain or idempotent") }
            return mode
        }
        let peers = try await options.peerRunner()
        var results = BenchResults()
        try await tracing.withReceiver { sink, endpoint in
            for run in 1...options.runs {
                try await BenchEnvironment.with(peers: peers) { env in
                    var ours: [(SettleMode, Bool?, LatencyBench.Result, spans: Int)] = []
                    for mode in modes {
                        for exporting in tracing.settings {
                            benchLog("run \(run): ours (\(mode.rawValue)\(BenchTracing.label(exporting))), \(events) events at \(Int(rate))/s")
                            let spansBefore = sink?.spans ?? 0
                            let result = try await LatencyBench(env: env).run(
                                .init(events: events, rate: rate, settle: mode, tracing: BenchTracing.environment(exporting: exporting, to: endpoint)))
                            if result.maxBehindScheduleMs > 5 {
                                benchLog("our publisher fell \(String(format: "%.1f", result.maxBehindScheduleMs)) ms behind its schedule")
                            }
                            let spans = (sink?.spans ?? 0) - spansBefore
                            benchLog("run \(run): p99 \(String(format: "%.3f", result.p(99))) ms" + (exporting == true ? ", the receiver got \(spans) spans for \(events) events" : ""))
                            ours.append((mode, exporting, result, spans))
                        }
                    }
                    var peer: [String: Any]?
                    if let peers = env.peers {
                        try await env.flush()
                        benchLog("run \(run): peer redispy_latency")
                        peer = try await peers.run(
                            "redispy_latency.py", port: env.port, ["--events", "\(events)", "--rate", "\(rate)", "--stream", "peer:latency"])
                    }
                    var off: [String: Double] = [:]
                    for (mode, exporting, result, spans) in ours {
                        let prefix = "latency.\(Int(rate))per_s" + (mode == .idempotent ? "" : ".\(mode.rawValue)")
                        if exporting == true {
                            results.add(BenchFigure(name: "\(prefix).spans_exported", unit: "%", ours: 100 * Double(spans) / Double(events), peer: nil))
                        }
                        for (q, key, name) in [(50.0, "p50_ms", "p50"), (99, "p99_ms", "p99"), (99.9, "p999_ms", "p99.9"), (100, "max_ms", "max")] {
                            results.add(
                                BenchTracing.figure(
                                    "\(prefix).\(name)", unit: "ms", value: result.p(q), peer: try peer.map { try PeerRunner.number($0, key) },
                                    exporting: exporting, off: &off["\(prefix).\(name)"]))
                        }
                    }
                }
            }
        }
        results.print(
            json: options.json,
            title: "latency: publish to handler start, \(events) events at \(Int(rate))/s, settle \(settle.joined(separator: " and ")); ratio = ours/peer (below 1: ours faster)"
                + (tracing == .compare ? "; *.tracing_on_vs_off: tracing on (every span exported to a local receiver) in the ours column, off in the peer column" : ""))
    }
}
