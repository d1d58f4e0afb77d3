import ArgumentParser

/// `ordershop bench worker`: one, two and four worker processes draining 200,000 preloaded
/// events, in plain (batched XACK) and idempotent settle modes, with a per-entry handler and a
/// batch handler (`.batch` figures: one call per read batch, like the peer's loop), beside the redis-py peer
/// (`redispy_group_worker.py --ack batch`) on the same server in the same run.
struct BenchWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Worker drain throughput (plain and idempotent settle; 1, 2 and 4 processes) against the redis-py peer.",
        discussion: "Timing: from the moment every probe is blocked in XREADGROUP and the stream is released, to the first poll that sees everything delivered and acked. See Sources/ordershop/Bench/WorkerDrainBench.swift."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Events preloaded per measurement.") var events = 200_000
    @Option(help: "Process counts to measure.") var processes: [Int] = [1, 2, 4]
    @Option(help: "Settle modes to measure.") var settle: [String] = ["plain", "idempotent"]
    @Option(help: "Handler forms to measure: each (one call per entry) and batch (one call per read batch).")
    var handler: [String] = ["each", "batch"]
    @Option(help: "Handlers in flight per probe process.") var maxInFlight = 256
    @Option(help: "Entries read ahead per probe process (default: 1000; with --cluster, 1000 × --partitions on both sides).")
    var prefetch: Int?
    @Option(help: "Entries per XREADGROUP (the peer reads COUNT 100).") var readCount = 100
    @Option(help: "The probes' --settle-linger-ms: the longest a settle waits for more entries under sustained load (0: never; default: the runtime's, 5 ms).")
    var settleLingerMs: Int?
    @Flag(help: "Also drain a partitioned stream on a local 3-primary Redis Cluster (idempotent, each handler), beside the same workers on one node and the peer on one node, with each run's Redis CPU per event.")
    var cluster = false
    @Option(help: "With --cluster: partitions of the stream.") var partitions = 6
    @Option(help: "How the probes trace: env (as OTEL_* in this environment say), off, on (every span exported to a receiver the bench runs) or compare (off and on alternately, side by side).")
    var tracing: BenchTracing = .env

    func run() async throws {
        if cluster { return try await runCluster() }
        let prefetch = self.prefetch ?? 1000
        let peers = try await options.peerRunner()
        var results = BenchResults()
        try await tracing.withReceiver { sink, endpoint in
            for run in 1...options.runs {
                try await BenchEnvironment.with(peers: peers) { env in
                    let bench = WorkerDrainBench(env: env)
                    for k in processes {
                        // The peer has one mode (batched XACK): measured once per process count.
                        let peer = try await peerDrain(env, run: run, consumers: k)
                        for mode in settle {
                            for form in handler {
                                let name = "worker.drain.\(mode)" + (form == "batch" ? ".batch" : "") + (k == 1 ? "" : ".\(k)proc")
                                var off: Double?
                                var offCPU: Double?
                                var offBenchCPU: Double?
                                for exporting in tracing.settings {
                                    benchLog("run \(run): ours \(mode), \(form) handler, \(k) process(es)\(BenchTracing.label(exporting))")
                                    let spansBefore = sink?.spans ?? 0
                                    let r = try await bench.run(
                                        .init(
                                            events: events, processes: k, settle: mode, handler: form, maxInFlight: maxInFlight, prefetch: prefetch,
                                            readCount: readCount, settleLingerMs: settleLingerMs, environment: BenchTracing.environment(exporting: exporting, to: endpoint)))
                                    if exporting == true, let sink {
                                        // Every handled event's span reached the receiver (the probes flush as they stop).
                                        let exported = 100 * Double(sink.spans - spansBefore) / Double(r.events)
                                        benchLog("run \(run): \(String(format: "%.0f", r.eventsPerSecond)) events/s, the receiver got \(sink.spans - spansBefore) spans for \(r.events) events")
                                        results.add(BenchFigure(name: "\(name).spans_exported", unit: "%", ours: exported, peer: nil))
                                    } else {
                                        benchLog("run \(run): \(String(format: "%.0f", r.eventsPerSecond)) events/s")
                                    }
                                    results.add(BenchTracing.figure(name, unit: "events/s", value: r.eventsPerSecond, peer: peer, exporting: exporting, off: &off))
                                    // The probes' CPU per event: what tracing costs the worker itself, apart from the drain's waits.
                                    results.add(
                                        BenchTracing.figure(
                                            "\(name).worker_cpu", unit: "µs/event", value: r.workerMicrosPerEvent, peer: nil, exporting: exporting, off: &offCPU))
                                    // This process's (its polling; with tracing on, the receiver's too).
                                    results.add(
                                        BenchTracing.figure(
                                            "\(name).bench_cpu", unit: "µs/event", value: r.benchMicrosPerEvent, peer: nil, exporting: exporting, off: &offBenchCPU))
                                }
                            }
                        }
                    }
                }
            }
        }
        results.print(
            json: options.json,
            title: "worker drain: \(events) events; probes --max-in-flight \(maxInFlight) --prefetch \(prefetch) --read-count \(readCount)\(lingerLabel); peer: redis-py + hiredis, COUNT 100, one XACK per batch"
                + (tracing == .compare ? "; *.tracing_on_vs_off: tracing on (every span exported to a local receiver) in the ours column, off in the peer column" : ""))
    }
}

extension BenchWorkerCommand {
    /// The redis-py peer draining `events` with `consumers` consumers on the environment's
    /// server (nil without peers); its events/s.
    func peerDrain(_ env: BenchEnvironment, run: Int, consumers: Int) async throws -> Double? {
        guard let peers = env.peers else { return nil }
        try await env.flush()
        benchLog("run \(run): peer redispy_group_worker --consumers \(consumers)")
        let r = try await peers.run(
            "redispy_group_worker.py", port: env.port,
            ["--events", "\(events)", "--consumers", "\(consumers)", "--ack", "batch", "--stream", "peer:drain"])
        return try PeerRunner.number(r, "events_per_s")
    }

    /// The probes' settle linger, for the title (empty with the runtime's default).
    var lingerLabel: String { settleLingerMs.map { " --settle-linger-ms \($0)" } ?? "" }

    func validate() throws {
        if let settleLingerMs, settleLingerMs < 0 { throw ValidationError("--settle-linger-ms must be 0 or more") }
    }
}
