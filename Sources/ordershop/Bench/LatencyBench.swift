import Foundation
import Logging
import OrderShop
import RedisClient
import ServiceLifecycle
import StreamWorker
import Synchronization
import Tracing

/// End-to-end latency: publish at a fixed rate, measure publish to handler start.
///
/// The publisher and a `StreamWorker` run in this process, so both timestamps come from the
/// same clock (CLOCK_MONOTONIC): the publisher writes it into the `ts_ns` field just before
/// its XADD, and the handler's first action is to read the clock again. The publisher keeps an
/// absolute schedule (no drift), as the peer's does (`redispy_latency.py`, which also runs its
/// producer and consumer on one machine and one clock).
struct LatencyBench {
    struct Options {
        var events: Int
        var rate: Double
        var settle: SettleMode
        /// Added to this process's environment for the worker's tracer (``BenchTracing``).
        var tracing: [String: String] = [:]
    }

    struct Result {
        var sortedMilliseconds: [Double]
        var maxBehindScheduleMs: Double
        func p(_ q: Double) -> Double { percentile(sortedMilliseconds, q) }
    }

    let env: BenchEnvironment

    func run(_ o: Options) async throws -> Result {
        try await env.flush()
        let stream = "bench:latency"
        let group = "bench"
        _ = try await env.control.send(XGROUPCREATE(RedisArgument(stream), group: group, id: "$", makeStream: true))

        var logger = Logger(label: "bench.latency")
        logger.logLevel = .warning
        let pool = try RedisConnectionPool(configuration: env.server.configuration, maximumConnections: 8, logger: logger)
        let samples = SampleBox()
        let subscription = Subscription(stream: stream, group: group) { delivery in
            let now = monotonicNanoseconds()
            if let sent = delivery.string("ts_ns").flatMap(Int64.init) {
                samples.values.withLock { $0.append(now - sent) }
            }
            struct Entity: Decodable {}
            _ = try delivery.decodeJSON(Entity.self)
            return .done
        }
        let worker = StreamWorker(
            client: pool, configuration: WorkerConfiguration(consumerName: "latency", settleMode: o.settle),
            subscriptions: [subscription], logger: logger)
        // The worker traced as `ordershop work` is: spans exported when OTEL_EXPORTER_OTLP_ENDPOINT
        // is set (tracing on), else only propagated (off).
        let (tracer, tracing) = try ShopTracing.makeTracer(
            serviceName: "ordershop-bench-latency", environment: ProcessInfo.processInfo.environment.merging(o.tracing) { $1 }, logger: logger)
        let tracingGroup = ServiceGroup(services: [tracing], logger: logger)
        let exporting = Task { try await tracingGroup.run() }
        defer { exporting.cancel() }
        let running = withTracer(tracer) { Task { try await worker.run() } }
        defer { running.cancel() }

        try await env.waitUntil("the worker to join its group") {
            try await env.blockedReaders() >= 1
        }
        try await Task.sleep(for: .milliseconds(200))

        // The publisher: its own connection, an absolute schedule.
        var config = env.server.configuration
        config.timeouts.command = .seconds(30)
        let publisher = try RedisConnection(configuration: config)
        try await publisher.connect()
        let clock = ContinuousClock()
        let interval = Duration.nanoseconds(Int64(1e9 / o.rate))
        let start = clock.now
        var behind = Duration.zero
        for i in 0..<o.events {
            let due = start + interval * i
            let now = clock.now
            if due > now {
                try await Task.sleep(until: due, tolerance: .zero, clock: clock)
            } else {
                behind = max(behind, now - due)
            }
            let reply = try await publisher.send(BenchEvents.xadd(stream, i, extra: [("ts_ns", "\(monotonicNanoseconds())")]))
            try reply.throwingServerError()
        }
        await publisher.close()

        try await env.waitUntil("every event handled", timeout: .seconds(60), interval: .milliseconds(10)) {
            samples.values.withLock { $0.count } >= o.events
        }
        worker.drain()
        _ = try? await running.value
        await tracingGroup.triggerGracefulShutdown()
        _ = await exporting.result
        await pool.shutdown()
        let ms = samples.values.withLock { $0 }.map { Double($0) / 1e6 }.sorted()
        return Result(sortedMilliseconds: ms, maxBehindScheduleMs: behind.benchMilliseconds)
    }
}

/// Latencies recorded by handlers (a class: a Mutex cannot be captured by an escaping closure).
private final class SampleBox: Sendable {
    let values = Mutex<[Int64]>([])
}
