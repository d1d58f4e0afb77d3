import Foundation
import LocalRedis
import Logging
import RedisClient
import StreamWorker

/// Recovery from a dead worker: a `worker-probe` child reads 1,000 entries (its handlers wait an
/// hour, so it holds them all), and is SIGKILLed; a live sibling (a `StreamWorker` in this
/// process, same lease) reclaims them with XAUTOCLAIM once they have been idle for a lease,
/// handles and settles them.
///
/// Times, from the kill (same clock as every timestamp here):
/// - to the first reclaim: the first poll of the sibling's `reclaimed` counter that is
///   non-zero (polled every 0.2 ms, so at most about that late);
/// - from the first reclaim to all settled: from the last poll that still saw no reclaim (so
///   at most one poll early) to the first poll that sees all 1,000 acknowledged by the sibling
///   (its counters move after the settle's reply). Both parts are therefore upper bounds.
/// The peer (`redispy_reclaim.py`) measures the same parts with a sweep every 200 ms at
/// min-idle 1,000 ms; our reclaim loop also runs every lease/5 = 200 ms.
struct RecoveryBench {
    struct Options {
        var events: Int
        var leaseMs: Int
        var settle: SettleMode
    }

    struct Result {
        var killToFirstReclaimMs: Double
        var firstReclaimToAllSettledMs: Double
        var killToAllSettledMs: Double
    }

    let env: BenchEnvironment

    func run(_ o: Options) async throws -> Result {
        try await env.flush()
        let stream = "bench:recovery"
        let group = "bench"
        let control = env.control
        try await BenchEvents.preload(control, stream: stream, count: o.events)
        _ = try await control.send(XGROUPCREATE(RedisArgument(stream), group: group, id: "0", makeStream: true))

        let victim = try env.startProbe(
            stream: stream, group: group,
            arguments: [
                "--consumer", "victim", "--settle", o.settle.rawValue, "--lease-ms", "\(o.leaseMs)",
                "--max-in-flight", "\(o.events)", "--read-count", "\(o.events)", "--handler-delay-ms", "3600000",
            ])
        defer {
            if victim.isRunning { victim.signal(SIGKILL) }
            try? FileManager.default.removeItem(atPath: victim.outputFile)
        }
        try await env.waitUntil("the victim to hold \(o.events) entries") {
            if !victim.isRunning { throw BenchRunError("victim probe exited: \(victim.output.suffix(800))") }
            return try await control.send(XPENDING(RedisArgument(stream), group: group)).consumers["victim"] == o.events
        }

        // The live sibling, joined before the kill (as a running deployment's other workers are).
        var logger = Logger(label: "bench.recovery")
        logger.logLevel = .error
        let pool = try RedisConnectionPool(configuration: env.server.configuration, maximumConnections: 8, logger: logger)
        let subscription = Subscription(stream: stream, group: group) { delivery in
            struct Entity: Decodable {}
            _ = try delivery.decodeJSON(Entity.self)
            return .done
        }
        let rescuer = StreamWorker(
            client: pool,
            configuration: WorkerConfiguration(
                consumerName: "rescuer", maxInFlight: 256, readCount: 100, lease: .milliseconds(o.leaseMs), settleMode: o.settle),
            subscriptions: [subscription], logger: logger)
        let running = Task { try await rescuer.run() }
        defer { running.cancel() }
        try await env.waitUntil("the rescuer to join its group") {
            try await env.blockedReaders() >= 1
        }

        victim.signal(SIGKILL)
        let killed = ContinuousClock.now
        await victim.waitForExit()

        var lastNoReclaim = killed
        var firstReclaimSeen: ContinuousClock.Instant?
        var done: ContinuousClock.Instant?
        while done == nil {
            let now = ContinuousClock.now
            let reclaimed = rescuer.stats[.reclaimed]
            let settled = rescuer.stats[.processed] + rescuer.stats[.duplicates]
            if reclaimed == 0 {
                lastNoReclaim = now
            } else if firstReclaimSeen == nil {
                firstReclaimSeen = now
            }
            if settled >= o.events { done = now }
            if now - killed > .seconds(60) { throw BenchRunError("the rescuer did not settle every entry within 60 s") }
            try await Task.sleep(for: .microseconds(200))
        }
        rescuer.drain()
        _ = try? await running.value
        await pool.shutdown()

        let pending = try await control.send(XPENDING(RedisArgument(stream), group: group)).count
        guard pending == 0, rescuer.stats[.processed] == o.events else {
            throw BenchRunError("after recovery: \(pending) pending, \(rescuer.stats[.processed]) processed (expected 0 and \(o.events))")
        }
        return Result(
            killToFirstReclaimMs: ((firstReclaimSeen ?? done!) - killed).benchMilliseconds,
            firstReclaimToAllSettledMs: (done! - lastNoReclaim).benchMilliseconds,
            killToAllSettledMs: (done! - killed).benchMilliseconds)
    }
}
