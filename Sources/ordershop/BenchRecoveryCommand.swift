import ArgumentParser
import StreamWorker

/// `ordershop bench recovery`: a worker holding 1,000 entries is SIGKILLed; the time until a
/// live sibling has settled them all, and its parts, beside the peer's `redispy_reclaim.py` at
/// the same min-idle (the lease).
struct BenchRecoveryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recovery",
        abstract: "Recovery after a SIGKILLed worker (lease, reclaim, settle) against the redis-py XAUTOCLAIM peer."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Entries the killed worker holds.") var events = 1000
    @Option(help: "Lease (the peer's min-idle), in milliseconds.") var leaseMs = 1000
    @Option(help: "Settle mode of the rescuing worker.") var settle = "idempotent"

    func run() async throws {
        guard let mode = SettleMode(rawValue: settle) else { throw ValidationError("--settle must be plain or idempotent") }
        let peers = try await options.peerRunner()
        var results = BenchResults()
        for run in 1...options.runs {
            try await BenchEnvironment.with(peers: peers) { env in
                benchLog("run \(run): ours, \(events) entries, lease \(leaseMs) ms")
                let ours = try await RecoveryBench(env: env).run(.init(events: events, leaseMs: leaseMs, settle: mode))
                var peer: [String: Any]?
                if let peers = env.peers {
                    try await env.flush()
                    benchLog("run \(run): peer redispy_reclaim")
                    peer = try await peers.run(
                        "redispy_reclaim.py", port: env.port,
                        ["--events", "\(events)", "--min-idle-ms", "\(leaseMs)", "--stream", "peer:reclaim"])
                }
                results.add(
                    BenchFigure(
                        name: "recovery.kill_to_first_reclaim", unit: "ms", ours: ours.killToFirstReclaimMs,
                        peer: try peer.map { try PeerRunner.number($0, "kill_to_first_claim_ms") }))
                results.add(
                    BenchFigure(
                        name: "recovery.first_reclaim_to_all_settled", unit: "ms", ours: ours.firstReclaimToAllSettledMs,
                        peer: try peer.map { try PeerRunner.number($0, "first_claim_to_all_acked_ms") }))
                results.add(
                    BenchFigure(
                        name: "recovery.kill_to_all_settled", unit: "ms", ours: ours.killToAllSettledMs,
                        peer: try peer.map { try PeerRunner.number($0, "kill_to_all_acked_ms") }))
            }
        }
        results.print(
            json: options.json,
            title: "recovery: \(events) entries held by a SIGKILLed worker, lease/min-idle \(leaseMs) ms, rescuer settle \(settle); ratio = ours/peer (below 1: ours faster)")
    }
}
