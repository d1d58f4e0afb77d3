import ArgumentParser

/// `ordershop bench scaling`: an I/O-bound handler (it waits 1 ms) in 1, 2, 4 and 8 worker
/// processes; events/s and the speed-up over one process. No peer: the peers have no such
/// handler. The figures `worker.scaling.1ms.<k>proc.speedup` (unit "x") are the ratio to one process.
struct BenchScalingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Scaling by processes with a 1 ms handler: events/s for 1, 2, 4, 8 processes and the ratio to 1.",
        discussion: """
            Each process may run --max-in-flight handlers at once: a per-process concurrency budget (such as a \
            mail API's connection limit per instance), which is what scaling out by processes is for. With a \
            budget of 4, one process can at best do 4 x 1000 events/s; 8 processes, 8 times that if nothing else \
            (Redis, CPU) is the limit.
            """
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Events preloaded per measurement.") var events = 40_000
    @Option(help: "Process counts to measure.") var processes: [Int] = [1, 2, 4, 8]
    @Option(help: "Milliseconds each handler waits.") var handlerDelayMs = 1
    @Option(help: "Handlers in flight per process.") var maxInFlight = 4
    @Option(help: "Settle mode.") var settle = "idempotent"

    func run() async throws {
        var results = BenchResults()
        for run in 1...options.runs {
            try await BenchEnvironment.with(peers: nil) { env in
                let bench = WorkerDrainBench(env: env)
                var base: Double?
                for k in processes {
                    benchLog("run \(run): scaling, \(k) process(es)")
                    let r = try await bench.run(
                        .init(
                            events: events, processes: k, settle: settle, maxInFlight: maxInFlight, readCount: 100,
                            handlerDelayMs: handlerDelayMs))
                    let rate = r.eventsPerSecond
                    results.add(BenchFigure(name: "worker.scaling.\(handlerDelayMs)ms.\(k)proc", unit: "events/s", ours: rate, peer: nil))
                    if k == 1 { base = rate }
                    if let base, k != 1 {
                        results.add(BenchFigure(name: "worker.scaling.\(handlerDelayMs)ms.\(k)proc.speedup", unit: "x", ours: rate / base, peer: nil))
                    }
                }
            }
        }
        if options.peers { results.note("no peer for this figure: the Python peers have no handler delay") }
        results.print(
            json: options.json,
            title: "scaling: \(events) events, handler waits \(handlerDelayMs) ms, --max-in-flight \(maxInFlight) per process, settle \(settle)")
    }
}
