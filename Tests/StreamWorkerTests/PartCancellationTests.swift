import Foundation
import LocalRedis
import Logging
import RedisClient
@testable import StreamWorker
import Synchronization
import TestSupport
import Testing

/// Starts `body`, cancels it after `after`, and returns how long it took to return after the
/// cancellation (nil when it had not returned 5 s later: a loop that outlives its task).
func timeToReturn(afterCancellingAt after: Duration = .milliseconds(300), _ body: @escaping @Sendable () async -> Void) async throws
    -> Duration?
{
    let returned = Atomic<Bool>(false)
    let task = Task {
        await body()
        returned.store(true, ordering: .releasing)
    }
    try await Task.sleep(for: after)
    let early = returned.load(ordering: .acquiring)
    #expect(!early, "returned before it was cancelled: nothing was tested")
    let cancelled = ContinuousClock.now
    task.cancel()
    guard await eventually(timeout: .seconds(5), every: .milliseconds(5), { returned.load(ordering: .acquiring) }) else { return nil }
    return ContinuousClock.now - cancelled
}

/// A context for running one part of the runtime alone.
func partContext(
    _ pool: any RedisClientProtocol, stream: String = "parts", configuration: WorkerConfiguration = .init(lease: .seconds(60)),
    handler: @escaping StreamHandler = { _ in .done }
) -> SubscriptionContext {
    var logger = Logger(label: "test-part")
    logger.logLevel = .critical
    return SubscriptionContext(
        subscription: Subscription(stream: stream, group: "g", handler: handler), consumer: "c", configuration: configuration, client: pool,
        stats: WorkerStats(), metrics: SubscriptionMetrics(stream: stream, group: "g"), logger: logger, held: HeldEntries(),
        drain: ShutdownSignal(), origin: nil, breaker: CircuitBreaker(backoff: configuration.unavailableBackoff), failureWarnings: RateLimitedWarning())
}

@Suite("Each part of the runtime ends when its task is cancelled")
struct PartCancellationTests {
    @Test("readers, reclaimer, pre-check, lanes, retries, settler, lease keeper and start-up each return on cancellation, not at the end of their 30-60 s waits")
    func partsEndOnCancellation() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await pool.send(XGROUPCREATE("parts", group: "g", id: "0", makeStream: true))
            let context = partContext(pool, configuration: .init(block: .seconds(30), lease: .seconds(60)))
            let prefetched = AsyncSemaphore(100)
            let intake = WorkIntake(context: context, prefetched: prefetched, prechecks: BatchQueue(), work: BatchQueue())
            var parts: [(String, @Sendable () async -> Void)] = []

            // A reader blocked in XREADGROUP BLOCK 30 s on an empty stream.
            let reader = EntryReader(
                context: context, intake: intake, membership: GroupMembership(context: context), rereadsPending: false,
                pendingReread: AsyncSemaphore(1))
            parts.append(("reader", { await reader.run() }))
            parts.append(("reclaimer", { await Reclaimer(context: context, intake: intake).run() }))
            parts.append(("pre-check", { await MarkerPrecheck(context: context, input: BatchQueue(), output: BatchQueue()).run() }))
            parts.append(("settler", { await Settler(context: context, queue: BatchQueue()).run() }))
            parts.append(("lease keeper", { await LeaseKeeper(context: context).run() }))

            // Lanes whose handlers are running (they wait 60 s) with more entries queued.
            let slow = partContext(pool, configuration: .init(maxInFlight: 2, lease: .seconds(60))) { _ in
                try await Task.sleep(for: .seconds(60))
                return .done
            }
            let work = BatchQueue<WorkItem>()
            let entries = (1...5).map { StreamEntry(id: "\($0)-0", fields: [StreamField("n", "\($0)")]) }
            work.append(contentsOf: entries.map { WorkItem(entry: $0, id: StreamID($0.id)!, deliveryCount: 1, marker: nil) })
            let call = HandlerCall(context: slow)
            let settled = BatchQueue<SettleItem>()
            let permits = AsyncSemaphore(2)
            let lanes = HandlerLanes(
                context: slow, call: call, retries: RetryScheduler(context: slow, call: call, permits: permits, settled: settled), permits: permits,
                prefetched: AsyncSemaphore(10), work: work, settled: settled)
            parts.append(("lanes", { await lanes.run() }))

            // A retry waiting out a 60 s backoff.
            var waiting = WorkerConfiguration(lease: .seconds(60))
            waiting.retryBackoff = Backoff(initial: .seconds(60), maximum: .seconds(60))
            let retrying = partContext(pool, configuration: waiting)
            let retries = RetryScheduler(context: retrying, call: HandlerCall(context: retrying), permits: AsyncSemaphore(1), settled: BatchQueue())
            let item = WorkItem(entry: entries[0], id: StreamID(entries[0].id)!, deliveryCount: 1, marker: "e1")
            parts.append(("retry", { await retries.retry(item, after: MalformedEvent("test")) }))

            // Start-up against a port where nothing listens.
            var unreachable = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: try LocalRedisServer.freePort()))
            unreachable.reconnect.retryWindow = .seconds(30)
            let nowhere = try RedisConnectionPool(configuration: unreachable)
            let startUp = GroupMembership(context: partContext(nowhere))
            parts.append(("start-up", { _ = try? await startUp.ensureGroupAtStart() }))

            // A settle retrying against a server that is gone.
            let lostSettler = Settler(context: partContext(nowhere), queue: BatchQueue())
            parts.append(("settle retry", {
                let queue = BatchQueue<SettleItem>()
                queue.append(.ack(item, effects: []))
                await Settler(context: lostSettler.context, queue: queue).run()
            }))

            for (name, part) in parts {
                let took = try await timeToReturn(part)
                // Each part would otherwise wait 30 s or more (backoffs, leases, reconnect
                // windows), so 5 s tells a cancelled part from one that ran out its wait without
                // timing it (a 1 s bound failed at 2.5 s with the machine loaded by other builds).
                #expect(took != nil, "\(name) did not return within 5 s of its cancellation")
            }
            await nowhere.shutdown()
        }
    }
}
