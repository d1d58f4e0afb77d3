import Foundation
import LocalRedis
import RedisClient
import StreamWorker

/// Times worker processes (`ordershop worker-probe` children) draining a preloaded stream.
///
/// What is timed, and why it is comparable with the peer (`redispy_group_worker.py`, which
/// times from the earliest consumer start, after its connection is up, to the last ack):
/// 1. the events are preloaded and the group is created at the *end* of the stream (`$`);
/// 2. the probes start, connect and block in `XREADGROUP ... >` (each one shows up in
///    `XINFO CONSUMERS`): process start-up is not timed, as the peer's is not;
/// 3. the clock starts; the group is moved back to `0` and one more event is appended, which
///    wakes every blocked reader at once (a barrier, like the peer's);
/// 4. the clock stops at the first poll (every millisecond, one `XINFO GROUPS`) that sees the
///    group's last-delivered id at the last entry and nothing pending: every event read and
///    settled. The poll can only make our time longer, by at most one interval.
/// The probes then get SIGTERM, and their own counters must add up to every event handled once.
struct WorkerDrainBench {
    struct Options {
        var events: Int
        var processes: Int
        var settle: String
        var handler: String = "each"
        var maxInFlight: Int
        var prefetch: Int? = nil
        var readCount: Int
        var handlerDelayMs: Int = 0
        /// The probes' `--settle-linger-ms` (nil: the runtime's default).
        var settleLingerMs: Int? = nil
        /// Added to each probe's environment (its tracing: ``BenchTracing``).
        var environment: [String: String] = [:]
    }

    struct Result {
        var events: Int
        var seconds: Double
        /// The server's CPU seconds (`INFO cpu`, user + system) from the release to the end.
        var redisCPUSeconds: Double
        /// What the server spent on each command during the drain.
        var commands: CommandStats
        /// The probes' CPU seconds (`/proc/<pid>/stat`, user + system, all threads) over the
        /// same span: the worker's own cost per event, which the drain's rate mixes with waits
        /// and with what else the machine ran.
        var workerCPUSeconds: Double
        /// This process's CPU seconds over the same span: its polling, and with tracing on the
        /// OTLP receiver it runs (which shares the machine's cores with the worker and Redis).
        var benchCPUSeconds: Double
        var eventsPerSecond: Double { Double(events) / seconds }
        var redisMicrosPerEvent: Double { redisCPUSeconds / Double(events) * 1e6 }
        var workerMicrosPerEvent: Double { workerCPUSeconds / Double(events) * 1e6 }
        var benchMicrosPerEvent: Double { benchCPUSeconds / Double(events) * 1e6 }
    }

    let env: BenchEnvironment

    func run(_ o: Options) async throws -> Result {
        try await env.flush()
        let stream = "bench:drain"
        let group = "bench"
        let control = env.control
        try await BenchEvents.preload(control, stream: stream, count: o.events)
        _ = try await control.send(XGROUPCREATE(RedisArgument(stream), group: group, id: "$", makeStream: true))

        var probes: [ChildProcess] = []
        defer { WorkerDrainBench.discard(probes) }
        for _ in 0..<o.processes {
            probes.append(
                try env.startProbe(
                    stream: stream, group: group,
                    arguments: [
                        "--settle", o.settle, "--handler", o.handler, "--max-in-flight", "\(o.maxInFlight)", "--read-count", "\(o.readCount)",
                        "--handler-delay-ms", "\(o.handlerDelayMs)",
                    ] + (o.prefetch.map { ["--prefetch", "\($0)"] } ?? []) + (o.settleLingerMs.map { ["--settle-linger-ms", "\($0)"] } ?? []),
                    environment: o.environment))
        }
        // Every reader of every probe (the default number of readers per subscription, and one
        // on the group's replay stream).
        let readers = o.processes * (WorkerConfiguration().readers + 1)
        try await env.waitUntil("\(readers) readers of \(o.processes) probes blocked in XREADGROUP", timeout: .seconds(60)) {
            if let dead = probes.first(where: { !$0.isRunning }) {
                throw BenchRunError("worker-probe exited at start: \(dead.output.suffix(800))")
            }
            return try await env.blockedReaders() >= readers
        }
        // The last reader counted may be about to park as a blocked client: give it a moment.
        try await Task.sleep(for: .milliseconds(100))

        let total = o.events + 1
        let commandsBefore = try await CommandStats.snapshot(control)
        let cpuBefore = try await redisCPUSeconds()
        let workerCPUBefore = probes.map { ProcessCPU.seconds(pid: $0.pid) ?? 0 }
        let benchCPUBefore = CPUAccounting.ownSeconds
        let started = ContinuousClock.now
        _ = try await control.send(XGROUPSETID(RedisArgument(stream), group: group, id: "0", entriesRead: 0))
        let lastID = try await control.send(BenchEvents.xadd(stream, o.events)).string ?? ""
        var finished = started
        while true {
            let info = try await control.send(XINFOGROUPS(RedisArgument(stream))).first { $0.name == group }
            if let info, info.pending == 0, info.lastDeliveredID == lastID {
                finished = .now
                break
            }
            if let dead = probes.first(where: { !$0.isRunning }) {
                throw BenchRunError("worker-probe died while draining: \(dead.output.suffix(800))")
            }
            let elapsed = ContinuousClock.now - started
            if elapsed > .seconds(900) { throw BenchRunError("drain did not finish within 15 minutes") }
            // Lag unknown (a server before 7.0): look every millisecond.
            let remaining = info.flatMap { g in g.lag.map { $0 + g.pending } }
            try await Task.sleep(for: remaining.map { DrainPolling.pause(remaining: $0, done: total - $0, elapsed: elapsed) } ?? DrainPolling.shortest)
        }
        let seconds = (finished - started).benchSeconds
        let workerCPU = zip(probes, workerCPUBefore).map { (ProcessCPU.seconds(pid: $0.pid) ?? $1) - $1 }.reduce(0, +)
        let benchCPU = CPUAccounting.ownSeconds - benchCPUBefore
        let redisCPU = try await redisCPUSeconds() - cpuBefore
        let commands = try await CommandStats.snapshot(control).since(commandsBefore)

        // Every event handled once: the probes' own counters must add up.
        var handled = 0
        for p in probes {
            let status = await p.stop(signal: SIGTERM, grace: .seconds(30))
            guard status == 0 else {
                throw BenchRunError("worker-probe did not exit cleanly: \(p.output.suffix(800))")
            }
            handled += try Self.stats(of: p)["processed"] ?? 0
        }
        guard handled == total else {
            throw BenchRunError("the probes processed \(handled) events, expected \(total)")
        }
        return Result(events: total, seconds: seconds, redisCPUSeconds: redisCPU, commands: commands, workerCPUSeconds: workerCPU, benchCPUSeconds: benchCPU)
    }

    private func redisCPUSeconds() async throws -> Double {
        CPUAccounting.usedCPU(try await env.control.send(INFO(section: "cpu")))
    }

    /// Kills the probes still running and removes their output files.
    static func discard(_ probes: [ChildProcess]) {
        for p in probes where p.isRunning { p.signal(SIGKILL) }
        for p in probes { try? FileManager.default.removeItem(atPath: p.outputFile) }
    }

    /// The `stats=<json>` line a probe prints at exit.
    static func stats(of probe: ChildProcess) throws -> [String: Int] {
        guard let line = probe.output.split(whereSeparator: \.isNewline).last(where: { $0.hasPrefix("stats=") }),
            let object = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Int]
        else { throw BenchRunError("worker-probe printed no stats: \(probe.output.suffix(800))") }
        return object
    }
}

extension Duration {
    var benchSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var benchMilliseconds: Double { benchSeconds * 1000 }
}
