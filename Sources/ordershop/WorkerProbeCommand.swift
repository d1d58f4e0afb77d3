import ArgumentParser
import Foundation
import Logging
import OrderShop
import RedisClient
import ServiceLifecycle
import StreamWorker

/// A synthetic worker process for tests, benchmarks and the chaos harness: it decodes each
/// entry's JSON and commits a counted effect, so that a checker can see every event applied once.
struct WorkerProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker-probe",
        abstract: "Run a synthetic stream worker (for tests, benchmarks and chaos runs).",
        shouldDisplay: false
    )

    @OptionGroup var redis: RedisOptions
    @Option(help: "Stream to consume.") var stream: String
    @Option(help: "Partitions of the stream (a partitioned stream's name; 1: a plain stream).") var partitions: Int = 1
    @Option(help: "Consumer group.") var group: String = "probe"
    @Option(help: "Stable consumer name (default: host-pid-random).") var consumer: String?
    @Option(help: "Settle mode: idempotent or plain.") var settle: String = "idempotent"
    @Option(help: "Handler form: each (one call per entry) or batch (one call per read batch).") var handler: String = "each"
    @Option(help: "Lease in milliseconds.") var leaseMs: Int = 5000
    @Option(help: "Handlers in flight at most.") var maxInFlight: Int = 64
    @Option(help: "Entries per read.") var readCount: Int = 100
    @Option(help: "Entries read ahead of the handlers (default: --read-count × 3 per stream read, each partition counted, at most 10000 in all; at least --max-in-flight).") var prefetch: Int?
    @Option(help: "Milliseconds each handler waits (an I/O-bound handler).") var handlerDelayMs: Int = 0
    @Option(help: "Drain deadline in milliseconds.") var drainDeadlineMs: Int = 10_000
    @Option(help: "Longest a settle waits for more handled entries under sustained load, in milliseconds (0: never waits; default: the runtime's, 5).")
    var settleLingerMs: Int?
    @Option(help: "Maximum deliveries before dead-lettering.") var maxDeliveries: Int = 5
    @Option(help: "Hash that counts applied effects per event id (HINCRBY, committed with the ack); empty: none.")
    var effectsKey: String = ""
    @Option(help: "Hash that counts handler invocations per event id (written by the handler itself); empty: none.")
    var invocationsKey: String = ""
    @Option(help: "Cancel the worker's task this many milliseconds after it started (instead of a graceful drain on a signal), print how long it took to return, then stay alive for --linger-ms (tests read the process's CPU time meanwhile).")
    var cancelAfterMs: Int?
    @Option(help: "With --cancel-after-ms: milliseconds to stay alive after the worker returned.") var lingerMs: Int = 0

    func run() async throws {
        let logger = Logger(label: "worker-probe")
        var config = try redis.configuration()
        config.clientName = "worker-probe"
        let client = try await connectRedis(config, maximumConnections: 8, logger: logger)
        guard let mode = SettleMode(rawValue: settle) else { throw ValidationError("--settle must be idempotent or plain") }
        guard (1...PartitionedStream.maximumPartitions).contains(partitions) else {
            throw ValidationError("--partitions must be 1 to \(PartitionedStream.maximumPartitions)")
        }
        let delay = Duration.milliseconds(handlerDelayMs)
        let effectsKey = self.effectsKey
        let invocationsKey = self.invocationsKey
        let partitioned = partitions > 1
        // Decodes the entity and commits the counted effect; the same work in both handler forms.
        @Sendable func handle(_ delivery: Delivery) async throws -> HandlerOutcome {
            struct Entity: Decodable {}
            _ = try delivery.decodeJSON(Entity.self)
            if !invocationsKey.isEmpty {
                let key = RedisArgument(invocationsKey)
                try await client.send(RawCommand(["HINCRBY", key, RedisArgument(delivery.eventID), "1"], keys: [key]))
            }
            if delay > .zero { try await Task.sleep(for: delay) }
            guard !effectsKey.isEmpty else { return .done }
            // In the entry's slot, as the settle script needs on a cluster: the key itself on one
            // stream (tests read it by name), a key per partition stream otherwise.
            let key = partitioned ? "\(delivery.stream):\(effectsKey)" : effectsKey
            return .done(effects: [["HINCRBY", RedisArgument(key), RedisArgument(delivery.eventID), "1"]])
        }
        let subscription: Subscription
        switch handler {
        case "each":
            subscription = Subscription(stream: stream, group: group, partitions: partitions, handler: handle)
        case "batch":
            subscription = Subscription(stream: stream, group: group, partitions: partitions) { deliveries in
                var results: [Result<HandlerOutcome, any Error>] = []
                results.reserveCapacity(deliveries.count)
                for delivery in deliveries {
                    do { results.append(.success(try await handle(delivery))) } catch { results.append(.failure(error)) }
                }
                return results
            }
        default:
            throw ValidationError("--handler must be each or batch")
        }
        var configuration = WorkerConfiguration(
            consumerName: consumer, maxInFlight: maxInFlight, readCount: readCount, prefetch: prefetch, lease: .milliseconds(leaseMs),
            maxDeliveries: maxDeliveries, settleMode: mode, drainDeadline: .milliseconds(drainDeadlineMs))
        if let settleLingerMs {
            guard settleLingerMs >= 0 else { throw ValidationError("--settle-linger-ms must be 0 or more") }
            configuration.settleBatching.linger = .milliseconds(settleLingerMs)
        }
        let worker = StreamWorker(client: client, configuration: configuration, subscriptions: [subscription], logger: logger)
        printFlushed("consumer=\(worker.consumerName)")
        if let cancelAfterMs {
            let running = Task { try await worker.run() }
            try await Task.sleep(for: .milliseconds(cancelAfterMs))
            let cancelled = ContinuousClock.now
            running.cancel()
            _ = await running.result
            let took = ContinuousClock.now - cancelled
            printFlushed("cancelled_returned_ms=\(took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000)")
            try await Task.sleep(for: .milliseconds(lingerMs))
            printFlushed("lingered")
            await client.shutdown()
            return
        }
        // Traced as `ordershop work` is (export only when OTEL_EXPORTER_OTLP_ENDPOINT is set):
        // `bench worker` measures the drain with tracing on and off.
        let tracing = try ShopTracing.bootstrap(serviceName: "ordershop-worker-probe", logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: tracing), .init(service: RedisClientService(client)), .init(service: worker)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        let stats = try JSONSerialization.data(withJSONObject: worker.stats.snapshot, options: [.sortedKeys])
        printFlushed("stats=\(String(decoding: stats, as: UTF8.self))")
        await client.shutdown()
    }
}

/// Writes a line to stdout at once (a parent process may be waiting for it).
func printFlushed(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
