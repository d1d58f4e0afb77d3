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
/// It takes any ``RedisClientProtocol``: a ``RedisConnectionPool`` for one server, a
/// ``RedisClusterClient`` for a Redis Cluster (run the client's `run()` beside it). On a
/// cluster each subscription works on its stream's slot: its group, markers and dead letters
/// share the stream's hash tag (``StreamKeys``), its readers read from the slot's primary.
/// A partitioned stream (``Subscription/partitions``, ``PartitionedStream``) is consumed as one
/// subscription per partition, so its partitions' nodes share the work.
///
/// Run it in a `ServiceGroup`, which turns SIGTERM and SIGINT into a graceful shutdown.
public final class StreamWorker: Service, Sendable {
    public let configuration: WorkerConfiguration
    public let consumerName: String
    public let stats = WorkerStats()
    private let client: any RedisClientProtocol
    private let subscriptions: [Subscription]
    private let logger: Logger
    private let runners: Mutex<[SubscriptionRunner]> = Mutex([])
    /// Handler slots (``WorkerConfiguration/maxInFlight``).
    private let permits: AsyncSemaphore
    /// Read-ahead slots (``WorkerConfiguration/prefetch``).
    private let prefetched: AsyncSemaphore
    /// Fired by ``drain()`` (or the service group's graceful shutdown).
    private let drainSignal = ShutdownSignal()

    public init(
        client: any RedisClientProtocol, configuration: WorkerConfiguration = .init(), subscriptions: [Subscription], logger: Logger
    ) {
        self.client = client
        // A partitioned stream is consumed as one subscription per partition.
        self.subscriptions = subscriptions.flatMap(\.perPartition)
        var configuration = configuration
        configuration.prefetch = configuration.prefetch(forStreams: self.subscriptions.count)
        self.configuration = configuration
        self.consumerName = configuration.consumerName ?? WorkerConfiguration.generatedConsumerName()
        var logger = logger
        logger[metadataKey: "consumer"] = "\(consumerName)"
        self.logger = logger
        self.permits = AsyncSemaphore(configuration.maxInFlight)
        self.prefetched = AsyncSemaphore(configuration.prefetch)
    }

    /// Runs until a graceful shutdown (or ``drain()``), then drains: returns once everything in
    /// hand is settled, or at the drain deadline. Returns at once when its task is cancelled,
    /// leaving what it holds pending for another worker. Throws only when a subscription's keys
    /// cannot share one Redis Cluster slot (a stream name whose braces defeat the hash tags), or
    /// when its ACL user may not use a subscription's stream (NOPERM while creating its group).
    public func run() async throws {
        let redisWarnings = RedisFailureWarnings()
        let primaries = try subscriptions.map {
            try SubscriptionRunner(
                subscription: $0, consumer: consumerName, configuration: configuration, client: client, permits: permits,
                prefetched: prefetched, stats: stats, drain: drainSignal, logger: logger, redisWarnings: redisWarnings)
        }
        // Each group's replay stream (`dlq replay` re-delivers there, to this group only), read
        // by a runner of its own with one reader; its entries keep the identity of the stream's.
        var replayConfiguration = configuration
        replayConfiguration.readers = 1
        let replays = try subscriptions.map { subscription in
            var replay = subscription
            replay.stream = StreamKeys.replay(stream: subscription.stream, group: subscription.group)
            replay.start = .beginning
            return try SubscriptionRunner(
                subscription: replay, consumer: consumerName, configuration: replayConfiguration, client: client, permits: permits,
                prefetched: prefetched, stats: stats, drain: drainSignal, logger: logger, redisWarnings: redisWarnings, origin: subscription.stream)
        }
        let runners = primaries + replays
        self.runners.withLock { $0 = runners }
        try await withGracefulShutdownHandler {
            try await self.run(primaries: primaries, replays: replays)
        } onGracefulShutdown: {
            self.drain()
        }
    }

    private func run(primaries: [SubscriptionRunner], replays: [SubscriptionRunner]) async throws {
        let runners = primaries + replays
        do {
            // The worker starts once its subscriptions' groups exist; a replay stream's group is
            // created by its runner (a missing permission on it must not stop the worker).
            for runner in primaries {
                guard try await runner.membership.ensureGroupAtStart() else {
                    logger.info("drained before the consumer groups could be created; stopping")
                    return
                }
            }
        } catch is CancellationError {
            logger.info("cancelled before the consumer groups could be created; stopping")
            return
        }
        // Any other error (NOPERM on a subscription's stream, ``GroupMembership``) ends the worker.
        logger.info(
            "worker started",
            metadata: [
                "subscriptions": "\(subscriptions.map { "\($0.stream)/\($0.group)" })", "settle": "\(configuration.settleMode.rawValue)",
                "lease": "\(configuration.lease)", "max_in_flight": "\(configuration.maxInFlight)", "prefetch": "\(configuration.prefetch)",
                "readers": "\(configuration.readers)",
            ])

        enum PartEnded: Sendable {
            case runner
            case drainDeadline
            case other
        }
        await withTaskGroup(of: PartEnded.self) { group in
            for runner in primaries {
                group.addTask {
                    await runner.run()
                    return .runner
                }
            }
            for runner in replays {
                group.addTask {
                    await runner.run(createsGroup: true)
                    return .runner
                }
            }
            group.addTask {
                await WorkerMaintenance(client: self.client, configuration: self.configuration, runners: runners, drain: self.drainSignal).run()
                return .other
            }
            // The graceful-shutdown deadline: a child task that waits for the drain, then for the
            // deadline, and ends the runners still draining by cancelling them.
            group.addTask {
                await self.drainSignal.wait()
                do {
                    try await Task.sleep(for: self.configuration.drainDeadline)
                } catch {
                    return .other
                }
                return .drainDeadline
            }
            var running = runners.count
            while let ended = await group.next() {
                switch ended {
                case .runner:
                    running -= 1
                    if running == 0 { group.cancelAll() }
                case .drainDeadline:
                    let unfinished = runners.reduce(0) { $0 + $1.heldCount }
                    // Handlers still running, or settles that cannot reach Redis: give up on both.
                    logger.warning(
                        "drain deadline passed; abandoning handlers in flight (their entries will be reclaimed)", metadata: ["held": "\(unfinished)"])
                    group.cancelAll()
                case .other:
                    break
                }
            }
        }
        logger.info("worker stopped", metadata: ["stats": "\(stats.snapshot)"])
    }

    /// Starts draining now (what SIGTERM does through the service group): stop reading, finish
    /// and settle handlers in flight within the drain deadline, then leave. Called before
    /// ``run()`` reaches its loops, the worker stops without starting them.
    public func drain() {
        guard drainSignal.fire() else { return }
        logger.info("draining", metadata: ["deadline": "\(configuration.drainDeadline)"])
    }

    /// Entries this worker holds right now (handling, settling, or waiting to retry).
    public var heldEntries: Int { runners.withLock { $0.reduce(0) { $0 + $1.heldCount } } }
}
