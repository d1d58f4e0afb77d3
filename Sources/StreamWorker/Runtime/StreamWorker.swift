import Logging
import RedisClient
import ServiceLifecycle
import Synchronization

/// A worker process's runtime: one consumer in the group of every subscription, with a bounded
/// number of handlers in flight across them.
///
/// Guarantees (each broken for real in the tests):
/// - an entry is acknowledged only after its handler succeeded, and in idempotent mode its
///   effects are committed once, atomically with the idempotency marker and the XACK;
/// - a consumer that dies or stalls loses its entries to the others one lease after its last
///   refresh, and a stalled one that wakes up can neither apply nor ack them;
/// - a live, slow handler is never stolen (its lease is refreshed);
/// - failing entries are retried with backoff and dead-lettered after the maximum deliveries
///   counted by Redis; malformed ones at once;
/// - on graceful shutdown nothing new is read, handlers in flight finish and are settled within
///   the drain deadline, and the consumer leaves its group only when it holds nothing.
///
/// Run it in a `ServiceGroup`, which turns SIGTERM and SIGINT into a graceful shutdown.
public final class StreamWorker: Service, Sendable {
    public let configuration: WorkerConfiguration
    public let consumerName: String
    public let stats = WorkerStats()
    private let pool: RedisConnectionPool
    private let subscriptions: [Subscription]
    private let logger: Logger
    private let runners: Mutex<[SubscriptionRunner]> = Mutex([])
    /// Handler slots (``WorkerConfiguration/maxInFlight``).
    private let permits: AsyncSemaphore
    /// Read-ahead slots (``WorkerConfiguration/prefetch``).
    private let prefetched: AsyncSemaphore

    public init(
        pool: RedisConnectionPool, configuration: WorkerConfiguration = .init(), subscriptions: [Subscription], logger: Logger
    ) {
        self.pool = pool
        self.configuration = configuration
        self.subscriptions = subscriptions
        self.consumerName = configuration.consumerName ?? WorkerConfiguration.generatedConsumerName()
        var logger = logger
        logger[metadataKey: "consumer"] = "\(consumerName)"
        self.logger = logger
        self.permits = AsyncSemaphore(configuration.maxInFlight)
        self.prefetched = AsyncSemaphore(configuration.prefetch)
    }

    /// Runs until a graceful shutdown (or cancellation), then drains.
    public func run() async throws {
        let runners = try subscriptions.map {
            try SubscriptionRunner(
                subscription: $0, consumer: consumerName, configuration: configuration, pool: pool, permits: permits,
                prefetched: prefetched, stats: stats, logger: logger)
        }
        self.runners.withLock { $0 = runners }
        for runner in runners { try await ensureGroupWithRetry(runner) }
        logger.info(
            "worker started",
            metadata: [
                "subscriptions": "\(subscriptions.map { "\($0.stream)/\($0.group)" })", "settle": "\(configuration.settleMode.rawValue)",
                "lease": "\(configuration.lease)", "max_in_flight": "\(configuration.maxInFlight)", "prefetch": "\(configuration.prefetch)",
                "readers": "\(configuration.readers)",
            ])

        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for runner in runners { group.addTask { await runner.run() } }
                group.addTask { await self.maintenanceLoop(runners) }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.drain()
        }
        logger.info("worker stopped", metadata: ["stats": "\(stats.snapshot)"])
    }

    /// Starts draining now (what SIGTERM does through the service group): stop reading, finish
    /// and settle handlers in flight within the drain deadline, then leave.
    public func drain() {
        let runners = self.runners.withLock { $0 }
        guard !runners.isEmpty, !runners[0].isDraining else { return }
        logger.info("draining", metadata: ["deadline": "\(configuration.drainDeadline)"])
        for runner in runners { runner.drain() }
        let deadline = configuration.drainDeadline
        let logger = self.logger
        Task {
            try? await Task.sleep(for: deadline)
            let unfinished = runners.reduce(0) { $0 + $1.heldCount }
            guard unfinished > 0 else { return }
            // Handlers still running, or settles that cannot reach Redis: give up on both.
            logger.warning("drain deadline passed; abandoning handlers in flight (their entries will be reclaimed)", metadata: ["held": "\(unfinished)"])
            for runner in runners { runner.abandonHandlers() }
        }
    }

    /// Entries this worker holds right now (handling, settling, or waiting to retry).
    public var heldEntries: Int { runners.withLock { $0.reduce(0) { $0 + $1.heldCount } } }

    private func ensureGroupWithRetry(_ runner: SubscriptionRunner) async throws {
        var attempt = 0
        while true {
            do {
                try await runner.ensureGroup()
                return
            } catch {
                attempt += 1
                logger.warning("cannot create consumer group yet; retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: pool.configuration.reconnect.backoff(attempt: attempt))
            }
        }
    }

    /// Periodic work that any worker may do: gauges for each group, and removing consumers that
    /// have been idle for long and hold nothing.
    private func maintenanceLoop(_ runners: [SubscriptionRunner]) async {
        let inspector = GroupInspector(pool: pool)
        var lastCleanup = ContinuousClock.now
        while !(runners.first?.isDraining ?? true) {
            for runner in runners {
                if let status = try? await inspector.groupStatus(stream: runner.stream, group: runner.group) {
                    runner.metrics.pending.record(status.pending)
                    runner.metrics.lag.record(status.lag ?? 0)
                    runner.metrics.oldestPendingAge.record(status.oldestPendingAge ?? 0)
                    runner.metrics.consumers.record(status.consumers.count)
                    runner.metrics.deadLetterLength.record(status.deadLetters)
                }
            }
            if ContinuousClock.now - lastCleanup > min(configuration.removeIdleConsumersAfter / 4, .seconds(60)) {
                lastCleanup = .now
                for runner in runners { await runner.removeIdleConsumers() }
            }
            var waited = Duration.zero
            while waited < configuration.inspectionInterval && !(runners.first?.isDraining ?? true) {
                try? await Task.sleep(for: .milliseconds(200))
                waited += .milliseconds(200)
            }
        }
    }
}
