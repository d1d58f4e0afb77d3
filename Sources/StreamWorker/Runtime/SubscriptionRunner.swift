import Logging
import RedisClient

/// Runs one subscription (a stream and a group) inside a worker process. It only wires the
/// parts, each of which owns one concern, and runs their loops as child tasks of one task group:
///
/// ```
/// readers + reclaimer -> intake -> marker pre-check -> handler lanes (+ retries) -> settler
///                                                       lease keeper (while anything is held)
/// ```
///
/// The drain (``ShutdownSignal``) stops the readers and the reclaimer; each stage ends when the
/// one before it has ended and its queue is empty; the lease keeper is cancelled after the last
/// settle; then the consumer leaves its group if it holds nothing. Cancelling the task (the
/// drain deadline, or a hard stop) ends every loop at once; what is held stays pending and is
/// reclaimed by another worker one lease later.
final class SubscriptionRunner: Sendable {
    let context: SubscriptionContext
    let membership: GroupMembership
    private let permits: AsyncSemaphore
    private let prefetched: AsyncSemaphore

    var stream: String { context.stream }
    var group: String { context.group }
    var metrics: SubscriptionMetrics { context.metrics }
    var heldCount: Int { context.held.count }

    init(
        subscription: Subscription, consumer: String, configuration: WorkerConfiguration, client: any RedisClientProtocol,
        permits: AsyncSemaphore, prefetched: AsyncSemaphore, stats: WorkerStats, drain: ShutdownSignal, logger: Logger,
        redisWarnings: RedisFailureWarnings = RedisFailureWarnings(), origin: String? = nil
    ) throws {
        var logger = logger
        logger[metadataKey: "stream"] = "\(subscription.stream)"
        logger[metadataKey: "group"] = "\(subscription.group)"
        self.context = SubscriptionContext(
            subscription: subscription, consumer: consumer, configuration: configuration, client: client, stats: stats,
            metrics: SubscriptionMetrics(stream: subscription.stream, group: subscription.group, origin: origin), logger: logger, held: HeldEntries(),
            drain: drain, origin: origin, breaker: CircuitBreaker(backoff: configuration.unavailableBackoff), failureWarnings: RateLimitedWarning(),
            redisWarnings: redisWarnings)
        self.membership = GroupMembership(context: context)
        self.permits = permits
        self.prefetched = prefetched
        // Everything one subscription's scripts and pipelines touch must live in its stream's
        // slot on a Redis Cluster (StreamKeys tags them so); a stream name that defeats the tags
        // is refused here rather than by every settle.
        let streamKey = RedisArgument(subscription.stream)
        _ = try HashSlot.common(
            [streamKey, RedisArgument(StreamKeys.deadLetter(stream: subscription.stream, group: subscription.group)),
             RedisArgument(StreamKeys.markerBucket(stream: subscription.stream, group: subscription.group, bucket: 0))],
            command: "subscription \(subscription.stream)/\(subscription.group)")
    }

    /// Runs until the drain has settled everything in hand, or until cancelled. `createsGroup`:
    /// create the group first (retrying while Redis refuses), for a runner whose group is not
    /// needed for the worker to start (a replay stream).
    func run(createsGroup: Bool = false) async {
        if createsGroup {
            do {
                guard try await membership.ensureGroupAtStart() else { return }
            } catch {
                return
            }
        }
        let prechecks = BatchQueue<WorkItem>()
        let work = BatchQueue<WorkItem>()
        let settled = BatchQueue<SettleItem>()
        let intake = WorkIntake(context: context, prefetched: prefetched, prechecks: prechecks, work: work)
        let call = HandlerCall(context: context)
        let lanes = HandlerLanes(
            context: context, call: call, retries: RetryScheduler(context: context, call: call, permits: permits, settled: settled),
            permits: permits, prefetched: prefetched, work: work, settled: settled)
        let precheck = MarkerPrecheck(context: context, input: prechecks, output: work)
        let settler = Settler(context: context, queue: settled)
        let leases = LeaseKeeper(context: context)

        await withTaskGroup(of: Void.self) { keeper in
            keeper.addTask { await leases.run() }
            await withTaskGroup(of: Void.self) { stages in
                stages.addTask {
                    await withTaskGroup(of: Void.self) { sources in
                        // Open once the first reader has re-read this consumer's pending entries.
                        let pendingReread = AsyncSemaphore(self.context.configuration.consumerName == nil ? 1 : 0)
                        for index in 0..<self.context.configuration.readers {
                            let reader = EntryReader(
                                context: self.context, intake: intake, membership: self.membership,
                                rereadsPending: index == 0, pendingReread: pendingReread)
                            sources.addTask { await reader.run() }
                        }
                        sources.addTask { await Reclaimer(context: self.context, intake: intake).run() }
                        sources.addTask { await self.membership.announceWhileReading() }
                    }
                    prechecks.finish()
                }
                stages.addTask {
                    await precheck.run()
                    // Nothing new comes in after a drain: the lanes end once their handlers have.
                    work.finish()
                }
                stages.addTask {
                    await lanes.run()
                    // Every handler has returned: settle what they left, then stop.
                    settled.finish()
                }
                stages.addTask { await settler.run() }
            }
            keeper.cancelAll()
        }
        if !Task.isCancelled { await membership.leaveIfEmpty() }
    }
}
