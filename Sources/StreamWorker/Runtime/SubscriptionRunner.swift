import Foundation
import Logging
import RedisClient
import Synchronization

/// Runs one subscription (a stream and a group) inside a worker process: reading, handling,
/// settling, keeping leases, reclaiming, and leaving the group on shutdown.
final class SubscriptionRunner: Sendable {
    let subscription: Subscription
    let consumer: String
    let configuration: WorkerConfiguration
    let pool: RedisConnectionPool
    /// Handler slots, shared by the process's subscriptions: taken when a handler starts,
    /// returned when it returns.
    let permits: AsyncSemaphore
    /// Read-ahead slots, shared too: taken when entries are read or reclaimed, returned when
    /// their handler starts. Reads wait for these, never for a handler to finish.
    let prefetched: AsyncSemaphore
    let stats: WorkerStats
    let metrics: SubscriptionMetrics
    let logger: Logger
    /// The connections for the blocking XREADGROUP (``WorkerConfiguration/readers``), so that
    /// a blocked read never holds a pool connection.
    private let readers: [RedisConnection]
    /// The hashes that hold this group's idempotency markers.
    private let markers: IdempotencyMarkers

    private let work = BatchQueue<WorkItem>()
    /// Entries read in idempotent mode, waiting for the check of their markers. A stage of its
    /// own so that the reader's next XREADGROUP overlaps the previous batch's marker check.
    private let prechecks = BatchQueue<WorkItem>()
    private let settleQueue = BatchQueue<SettleItem>()

    private struct State {
        /// Ids this consumer holds: handling, waiting to settle, or waiting to retry.
        var held: Set<String> = []
        var draining = false
        /// Settling is over; the lease keeper stops.
        var stopped = false
        /// The drain deadline passed: stop retrying settles too (Redis may be unreachable).
        var abandoned = false
    }
    private let state = Mutex(State())

    var stream: String { subscription.stream }
    var group: String { subscription.group }

    init(
        subscription: Subscription, consumer: String, configuration: WorkerConfiguration, pool: RedisConnectionPool,
        permits: AsyncSemaphore, prefetched: AsyncSemaphore, stats: WorkerStats, logger: Logger
    ) throws {
        self.subscription = subscription
        self.consumer = consumer
        self.configuration = configuration
        self.pool = pool
        self.permits = permits
        self.prefetched = prefetched
        self.stats = stats
        self.metrics = SubscriptionMetrics(stream: subscription.stream, group: subscription.group)
        var logger = logger
        logger[metadataKey: "stream"] = "\(subscription.stream)"
        logger[metadataKey: "group"] = "\(subscription.group)"
        self.logger = logger
        self.markers = IdempotencyMarkers(stream: subscription.stream, group: subscription.group, ttl: configuration.idempotencyTTL)
        var readerConfiguration = pool.configuration
        // The reader retries on its own loop; a short connect window keeps shutdown prompt.
        readerConfiguration.reconnect.retryWindow = .zero
        self.readers = try (0..<configuration.readers).map { _ in try RedisConnection(configuration: readerConfiguration, logger: logger) }
    }

    var isDraining: Bool { state.withLock { $0.draining } }
    var heldCount: Int { state.withLock { $0.held.count } }

    /// Creates the group if it does not exist (BUSYGROUP means it does).
    func ensureGroup() async throws {
        do {
            _ = try await pool.send(XGROUPCREATE(RedisArgument(stream), group: group, id: subscription.start.groupID, makeStream: true))
            logger.info("created consumer group", metadata: ["from": "\(subscription.start.groupID)"])
        } catch let error as RedisError where error.code == .busyGroup {
            return
        }
    }

    // MARK: - Lifecycle

    /// The handlers' task group runs in its own task so that the drain deadline can cancel the
    /// handlers alone, while settling and lease keeping go on.
    private let dispatcher = Mutex<Task<Void, Never>?>(nil)

    /// Runs until ``drain()`` and then until everything in hand is settled or abandoned.
    func run() async {
        let dispatcher = Task { await self.dispatchLoop() }
        self.dispatcher.withLock { $0 = dispatcher }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskGroup(of: Void.self) { sources in
                    // Open once the first reader has re-read this consumer's pending entries.
                    let pendingReread = AsyncSemaphore(self.configuration.consumerName == nil ? 1 : 0)
                    for (index, reader) in self.readers.enumerated() {
                        sources.addTask { await self.readLoop(on: reader, rereadsPending: index == 0, pendingReread: pendingReread) }
                    }
                    sources.addTask { await self.reclaimLoop() }
                }
                self.prechecks.finish()
            }
            group.addTask {
                await self.precheckLoop()
                // Nothing new comes in after a drain: the dispatcher ends once its handlers have.
                self.work.finish()
            }
            group.addTask { await self.leaseLoop() }
            group.addTask { await self.settleLoop() }
            group.addTask {
                await withTaskCancellationHandler {
                    await dispatcher.value
                } onCancel: {
                    dispatcher.cancel()
                }
                // Every handler has returned (or was abandoned): settle what they left, then stop.
                self.settleQueue.finish()
            }
            await group.waitForAll()
        }
        for reader in readers { await reader.close() }
        await leaveGroupIfEmpty()
    }

    /// Stops reading and reclaiming; handlers in flight finish and are settled; entries waiting
    /// for a retry are left pending for another worker.
    func drain() {
        state.withLock { $0.draining = true }
    }

    /// Called when the drain deadline passed: handlers still running are cancelled and
    /// abandoned; their entries stay pending and another worker reclaims them after the lease.
    func abandonHandlers() {
        state.withLock { $0.abandoned = true }
        dispatcher.withLock { $0?.cancel() }
    }

    // MARK: - Reading

    /// The most one read (or one reclaim) reserves: a read count, but at most a share of the
    /// read-ahead room such that the readers, blocked in XREADGROUP with their room reserved
    /// while the stream is idle, still leave room for the reclaimer.
    private var readChunk: Int {
        max(1, min(configuration.readCount, configuration.prefetch / (configuration.readers + 1)))
    }

    /// One reader. Several run side by side, each on its own connection: Redis hands each
    /// XREADGROUP `>` different entries.
    private func readLoop(on reader: RedisConnection, rereadsPending: Bool, pendingReread: AsyncSemaphore) async {
        // A stable consumer name may have pending entries from its previous life: the first
        // reader re-reads them (id 0) before any reader asks for new ones (>).
        var pendingCursor: String? = configuration.consumerName != nil && rereadsPending ? "0" : nil
        if pendingCursor == nil {
            await pendingReread.acquire(1)
            pendingReread.release(1)
        }
        defer { if pendingCursor != nil { pendingReread.release(1) } }
        var failures = 0
        // The last read of new entries came back empty: the stream is idle for this group.
        var idle = true
        while !isDraining {
            // Room is reserved before reading (readers run side by side, and the room is shared
            // by the process's subscriptions). While entries flow: a non-blocking read, for
            // half a read at least (reading as soon as one slot frees would make many small
            // reads whenever handlers are fast). While idle: a blocking read of one entry, so
            // that a reader parked in XREADGROUP BLOCK holds one slot, not a read's worth that
            // other subscriptions and the reclaimer would wait for.
            let blocking = idle && pendingCursor == nil
            let count = blocking ? await prefetched.acquire(atLeast: 1, upTo: 1) : await prefetched.acquire(atLeast: readChunk / 2, upTo: readChunk)
            // What the dispatch did not take is given back at the end of the iteration.
            var reserved = count
            defer { prefetched.release(reserved) }
            if isDraining { break }
            do {
                let id = pendingCursor ?? ">"
                let batches = try await reader.send(
                    XREADGROUP(
                        group: group, consumer: consumer, streams: [(stream, id)], count: count,
                        block: blocking ? configuration.block : nil))
                failures = 0
                let entries = batches.first?.entries ?? []
                if pendingCursor == nil { idle = entries.isEmpty }
                if let cursor = pendingCursor {
                    if entries.isEmpty {
                        pendingCursor = nil
                        pendingReread.release(1)
                        continue
                    }
                    pendingCursor = entries.last?.id ?? cursor
                    let counts = try await deliveryCounts(of: entries.map(\.id))
                    await dispatch(entries, deliveryCounts: counts, reserved: reserved)
                    reserved = 0
                } else if !entries.isEmpty {
                    await dispatch(entries, deliveryCounts: [:], reserved: reserved)
                    reserved = 0
                }
            } catch let error as RedisError where error.code == .noGroup {
                await recreateGroup(after: error)
            } catch {
                failures += 1
                logger.warning("read failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: pool.configuration.reconnect.backoff(attempt: failures))
            }
        }
    }

    /// NOGROUP at run time: the stream or the group was deleted. Recreate and go on.
    private func recreateGroup(after error: RedisError) async {
        logger.warning("consumer group missing (NOGROUP); recreating it", metadata: ["error": "\(error.message)"])
        do {
            try await ensureGroup()
            stats.add(.groupsRecreated, metrics: metrics)
        } catch {
            logger.error("cannot recreate consumer group", metadata: ["error": "\(error)"])
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Redis's delivery counters for ids this consumer holds.
    private func deliveryCounts(of ids: [String]) async throws -> [String: Int] {
        let sorted = sortedIDs(ids)
        guard let first = sorted.first, let last = sorted.last else { return [:] }
        let pending = try await pool.send(
            XPENDINGDetail(RedisArgument(stream), group: group, start: first, end: last, count: ids.count * 2 + 64, consumer: consumer))
        return Dictionary(pending.map { ($0.id, $0.deliveryCount) }, uniquingKeysWith: max)
    }

    /// Hands entries to the dispatcher. Entries already held (a slow reclaim of our own) are
    /// skipped; in idempotent mode, entries whose marker exists are flagged as duplicates.
    /// `reserved`: read-ahead slots the caller took for these entries; the dispatch takes them
    /// over (gives back what it does not need, waits for any more it needs).
    private func dispatch(_ entries: [StreamEntry], deliveryCounts: [String: Int], reserved: Int) async {
        let fresh = state.withLock { s in
            entries.filter { s.held.insert($0.id).inserted }
        }
        if reserved > fresh.count { prefetched.release(reserved - fresh.count) }
        guard !fresh.isEmpty else { return }
        stats.add(.delivered, fresh.count, metrics: metrics)
        if configuration.plantedBug == .ackBeforeHandling {
            logger.critical("PLANTED BUG: acknowledging entries before handling them")
            _ = try? await pool.send(XACK(RedisArgument(stream), group: RedisArgument(group), ids: fresh.map(\.id)))
        }
        if fresh.count > reserved { await prefetched.acquire(fresh.count - reserved) }
        let items = fresh.map { workItem($0, deliveryCount: deliveryCounts[$0.id] ?? 1) }
        if configuration.settleMode == .idempotent {
            prechecks.append(contentsOf: items)
        } else {
            work.append(contentsOf: items)
        }
    }

    /// Idempotent mode: flags the entries whose marker exists (one round trip for everything read
    /// since the last check), then hands them to the dispatcher.
    private func precheckLoop() async {
        while true {
            let items = await prechecks.next()
            if items.isEmpty { break }
            work.append(contentsOf: await flaggingDuplicates(items))
        }
    }

    /// An entry to handle; in idempotent mode with its marker (the event id, else stream/id).
    private func workItem(_ entry: StreamEntry, deliveryCount: Int) -> WorkItem {
        let marker = configuration.settleMode == .idempotent ? (entry.string("event_id") ?? "\(stream)/\(entry.id)") : nil
        return WorkItem(entry: entry, deliveryCount: deliveryCount, marker: marker)
    }

    /// The items, those whose marker exists flagged as duplicates (an HMGET of the current and
    /// the previous marker hash, in one round trip). Advisory: the settle checks again
    /// atomically. If the check fails, none is flagged: the settle still applies nothing twice.
    private func flaggingDuplicates(_ items: [WorkItem]) async -> [WorkItem] {
        let fields = items.compactMap { item in item.marker.map { RedisArgument($0) } }
        guard fields.count == items.count, !fields.isEmpty else { return items }
        let buckets = markers.buckets()
        guard let replies = try? await pool.pipeline([["HMGET", RedisArgument(buckets.current)] + fields, ["HMGET", RedisArgument(buckets.previous)] + fields]),
            replies.count == 2, let current = replies[0].array, let previous = replies[1].array,
            current.count == items.count, previous.count == items.count
        else { return items }
        var flagged = items
        for i in flagged.indices where !current[i].isNull || !previous[i].isNull { flagged[i].knownDuplicate = true }
        return flagged
    }

    // MARK: - Handling

    private func dispatchLoop() async {
        if let batchHandler = subscription.batchHandler {
            await dispatchBatches(to: batchHandler)
            return
        }
        await withDiscardingTaskGroup { group in
            // Per-entry handlers run on lanes: maxInFlight long-lived tasks, not a task per entry.
            let lanes = LaneQueue<WorkItem>()
            for _ in 0..<configuration.maxInFlight {
                group.addTask { await self.lane(lanes) }
            }
            while true {
                let items = await work.next()
                if items.isEmpty { break }
                lanes.append(contentsOf: items)
            }
            lanes.finish()
        }
    }

    /// One lane: handles entries one after another. The handler slot (shared by the process's
    /// subscriptions) is held only while the handler runs; a failed entry's retry waits in a
    /// task of its own, so that the lane goes on with the next entry.
    private func lane(_ lanes: LaneQueue<WorkItem>) async {
        await withDiscardingTaskGroup { retries in
            while let item = await lanes.next() {
                await permits.acquire(1)
                prefetched.release(1)
                if Task.isCancelled {
                    // Abandoned at the drain deadline: never started; another worker reclaims it.
                    permits.release(1)
                    release([item.entry.id])
                    continue
                }
                let outcome = await handle(item)
                permits.release(1)
                switch outcome {
                case .settle(let settle):
                    settleQueue.append(settle)
                case .retry:
                    retries.addTask { await self.conclude(item, outcome) }
                }
            }
        }
    }

    private func dispatchBatches(to batchHandler: @escaping StreamBatchHandler) async {
        await withDiscardingTaskGroup { group in
            while true {
                let items = await work.next()
                if items.isEmpty { break }
                // One task and one handler call per chunk; a chunk holds a handler slot per entry.
                let size = max(1, min(configuration.readCount, configuration.maxInFlight))
                for start in stride(from: 0, to: items.count, by: size) {
                    let chunk = Array(items[start..<min(start + size, items.count)])
                    await permits.acquire(chunk.count)
                    prefetched.release(chunk.count)
                    if Task.isCancelled {
                        permits.release(chunk.count)
                        release(chunk.map(\.entry.id))
                        continue
                    }
                    group.addTask { await self.processBatch(chunk, with: batchHandler) }
                }
            }
        }
    }

    /// Handles a chunk of entries with one call of the batch handler; each entry is then
    /// settled, or retried on its own (concurrently, without holding a handler slot while it
    /// waits), exactly as with a per-entry handler.
    private func processBatch(_ items: [WorkItem], with batchHandler: StreamBatchHandler) async {
        var outcomes = [Outcome?](repeating: nil, count: items.count)
        var handled: [Int] = []
        var deliveries: [Delivery] = []
        handled.reserveCapacity(items.count)
        deliveries.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            if let settle = settleWithoutHandling(item) {
                outcomes[index] = .settle(settle)
            } else {
                handled.append(index)
                deliveries.append(delivery(for: item))
            }
        }
        if !deliveries.isEmpty {
            let started = ContinuousClock.now
            let results = await batchHandler(deliveries)
            if results.count == deliveries.count {
                // The histogram is per entry: each gets the batch's duration divided by its size.
                let each = Int64((ContinuousClock.now - started).seconds * 1e9) / Int64(deliveries.count)
                for (k, index) in handled.enumerated() {
                    if case .success = results[k] { metrics.handlerDuration.recordNanoseconds(each) }
                    outcomes[index] = outcome(of: items[index], results[k])
                }
            } else {
                let error = BatchResultMismatch(deliveries: deliveries.count, results: results.count)
                logger.error("batch handler result count mismatch; retrying the batch's entries", metadata: ["error": "\(error)"])
                for index in handled { outcomes[index] = .retry(error) }
            }
        }
        permits.release(items.count)
        var settles: [SettleItem] = []
        var retries: [(WorkItem, any Error)] = []
        for (item, outcome) in zip(items, outcomes) {
            switch outcome {
            case .settle(let settle): settles.append(settle)
            case .retry(let error): retries.append((item, error))
            case nil: preconditionFailure("every entry of a batch has an outcome")
            }
        }
        settleQueue.append(contentsOf: settles)
        guard !retries.isEmpty else { return }
        await withDiscardingTaskGroup { group in
            for (item, error) in retries {
                group.addTask { await self.conclude(item, .retry(error)) }
            }
        }
    }

    /// After a handler returned (its slot released): settles the entry, or retries it with
    /// backoff until it succeeds, is dead-lettered, or is left for another worker.
    private func conclude(_ first: WorkItem, _ firstOutcome: Outcome) async {
        var item = first
        var outcome = firstOutcome
        while true {
            switch outcome {
            case .settle(let settle):
                settleQueue.append(settle)
                return
            case .retry(let error):
                if Task.isCancelled && isDraining {
                    // Abandoned at the drain deadline: leave it pending for another worker.
                    release([item.entry.id])
                    return
                }
                stats.add(.failed, metrics: metrics)
                if item.deliveryCount >= configuration.maxDeliveries {
                    settleQueue.append(
                        .deadLetter(
                            id: item.entry.id, fields: item.entry.fields,
                            reason: "failed \(item.deliveryCount) deliveries (maximum \(configuration.maxDeliveries))",
                            error: "\(error)", deliveryCount: item.deliveryCount))
                    return
                }
                logger.debug("handler failed; will retry", metadata: ["id": "\(item.entry.id)", "deliveries": "\(item.deliveryCount)", "error": "\(error)"])
                guard await sleepUnlessDraining(configuration.retryBackoff.delay(attempt: item.deliveryCount)) else {
                    // Shutting down: leave it pending; another worker reclaims it after the lease.
                    release([item.entry.id])
                    return
                }
                guard let next = await claimForRetry(item.entry.id, deliveryCount: item.deliveryCount + 1) else {
                    release([item.entry.id])
                    return
                }
                stats.add(.retried, metrics: metrics)
                await permits.acquire(1)
                item = next
                outcome = await handle(item)
                permits.release(1)
            }
        }
    }

    private enum Outcome {
        case settle(SettleItem)
        case retry(any Error)
    }

    private func handle(_ item: WorkItem) async -> Outcome {
        if let settle = settleWithoutHandling(item) { return .settle(settle) }
        let started = ContinuousClock.now
        do {
            let result = try await subscription.handler(delivery(for: item))
            metrics.handlerDuration.recordNanoseconds(Int64((ContinuousClock.now - started).seconds * 1e9))
            return outcome(of: item, .success(result))
        } catch {
            return outcome(of: item, .failure(error))
        }
    }

    /// Entries settled without calling the handler: deleted from the stream while pending, a
    /// known duplicate, or delivered more often than the maximum (consumers kept dying on it).
    private func settleWithoutHandling(_ item: WorkItem) -> SettleItem? {
        let entry = item.entry
        if entry.isDeleted {
            logger.error("pending entry no longer exists in the stream (trimmed or deleted)", metadata: ["id": "\(entry.id)"])
            return .lost(id: entry.id)
        }
        if item.knownDuplicate {
            return .ack(id: entry.id, marker: item.marker, effects: [])
        }
        if item.deliveryCount > configuration.maxDeliveries {
            return .deadLetter(
                id: entry.id, fields: entry.fields,
                reason: "delivered \(item.deliveryCount) times, more than the maximum \(configuration.maxDeliveries) (consumers died or stalled while handling it)",
                error: "", deliveryCount: item.deliveryCount)
        }
        return nil
    }

    private func delivery(for item: WorkItem) -> Delivery {
        Delivery(
            stream: stream, group: group, consumer: consumer, id: item.entry.id, fields: item.entry.fields, deliveryCount: item.deliveryCount)
    }

    /// What a handler's result means for its entry: settle it (acked with its effects, or
    /// dead-lettered when malformed), or retry it.
    private func outcome(of item: WorkItem, _ result: Result<HandlerOutcome, any Error>) -> Outcome {
        switch result {
        case .success(let outcome):
            return .settle(.ack(id: item.entry.id, marker: item.marker, effects: outcome.effects))
        case .failure(let malformed as MalformedEvent):
            logger.error("malformed entry; moving it to the dead letters", metadata: ["id": "\(item.entry.id)", "reason": "\(malformed.reason)"])
            return .settle(
                .deadLetter(
                    id: item.entry.id, fields: item.entry.fields, reason: "malformed: \(malformed.reason)", error: malformed.reason,
                    deliveryCount: item.deliveryCount))
        case .failure(let error):
            return .retry(error)
        }
    }

    /// Sleeps unless the worker starts draining; false when it did.
    private func sleepUnlessDraining(_ duration: Duration) async -> Bool {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if isDraining || Task.isCancelled { return false }
            try? await Task.sleep(for: min(.milliseconds(100), deadline - ContinuousClock.now))
        }
        return !isDraining
    }

    /// Re-delivers an entry to this consumer for a retry (counts a delivery in Redis).
    private func claimForRetry(_ id: String, deliveryCount: Int) async -> WorkItem? {
        for attempt in 1...5 {
            do {
                let reply = try await pool.evaluate(
                    WorkerScripts.retryClaim, keys: [RedisArgument(stream)],
                    arguments: [RedisArgument(group), RedisArgument(consumer), RedisArgument(id), RedisArgument(deliveryCount)])
                switch reply {
                case .array(let parts) where parts.count == 2:
                    let entry = try StreamEntryDecoding.entry(parts[0])
                    return workItem(entry, deliveryCount: parts[1].int ?? 1)
                case .bulkString, .simpleString:
                    stats.add(.lostToTrimming, metrics: metrics)
                    logger.error("entry was deleted from the stream before its retry", metadata: ["id": "\(id)"])
                    return nil
                default:
                    logger.warning("entry was claimed by another consumer before its retry", metadata: ["id": "\(id)"])
                    return nil
                }
            } catch {
                logger.warning("retry claim failed", metadata: ["id": "\(id)", "error": "\(error)"])
                try? await Task.sleep(for: pool.configuration.reconnect.backoff(attempt: attempt))
            }
        }
        return nil
    }

    private func release(_ ids: some Sequence<String>) {
        state.withLock { s in
            for id in ids { s.held.remove(id) }
        }
    }

    // MARK: - Settling

    private func settleLoop() async {
        while true {
            let items = await settleQueue.next()
            if items.isEmpty { break }
            // Lua's unpack() takes a few thousand values at most: at most 1000 entries per script call.
            for start in stride(from: 0, to: items.count, by: 1000) {
                await settle(Array(items[start..<min(start + 1000, items.count)]))
            }
        }
        state.withLock { $0.stopped = true }
    }

    /// Commits a batch in one round trip (a pipeline of at most three script/XACK calls).
    /// Connection failures are retried: every step is safe to repeat (ownership is checked,
    /// markers are set NX, XACK is idempotent).
    private func settle(_ items: [SettleItem]) async {
        var attempt = 0
        while true {
            do {
                try await settleOnce(items)
                return
            } catch let error as RedisError where error.code == .noGroup {
                logger.warning("consumer group vanished while settling; its pending entries went with it", metadata: ["count": "\(items.count)"])
                release(items.map(\.id))
                return
            } catch let error as RedisError where error.code.isServerError && !error.isTransientServerError && items.count > 1 {
                // A script error (for example a handler effect against a key of the wrong type):
                // settle one by one to find the culprit.
                logger.warning("batch settle failed; settling one by one", metadata: ["error": "\(error)"])
                for item in items { await settle([item]) }
                return
            } catch let error as RedisError where error.code.isServerError && !error.isTransientServerError {
                // One entry whose own effects fail: that never succeeds on retry. Dead-letter it.
                guard case .ack(let id, _, _) = items[0] else {
                    logger.error("settle failed", metadata: ["error": "\(error)"])
                    release(items.map(\.id))
                    return
                }
                logger.error("handler effects failed; moving the entry to the dead letters", metadata: ["id": "\(id)", "error": "\(error)"])
                let fields = (try? await pool.send(XRANGE(RedisArgument(stream), start: id, end: id)))?.first?.fields ?? []
                await settle([.deadLetter(id: id, fields: fields, reason: "effects failed", error: error.message, deliveryCount: 0)])
                return
            } catch {
                if state.withLock({ $0.abandoned }) {
                    // Past the drain deadline: leave these pending; another worker reclaims them.
                    logger.warning("settle abandoned at the drain deadline", metadata: ["count": "\(items.count)", "error": "\(error)"])
                    release(items.map(\.id))
                    return
                }
                attempt += 1
                logger.warning("settle failed; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                try? await Task.sleep(for: pool.configuration.reconnect.backoff(attempt: attempt))
            }
        }
    }

    private struct Ack {
        var order: StreamID
        var id: String
        var marker: String?
        var effects: [[RedisArgument]]
    }

    private struct DeadLetter {
        var id: String
        var fields: [StreamField]
        var reason: String
        var error: String
        var deliveryCount: Int
    }

    /// Splits ids in ascending order into runs with none of the other ids this consumer holds
    /// in between, and returns where each run ends (1-based indexes, for the settle script's
    /// ownership check: one XPENDING range per run returns little besides the run itself).
    private func runEnds(of sorted: [StreamID]) -> [Int] {
        let held = state.withLock { $0.held }
        let mine = Set(sorted)
        var others = held.compactMap { StreamID($0) }.filter { !mine.contains($0) }
        others.sort()
        var ends: [Int] = []
        var next = 0
        for i in sorted.indices.dropLast() {
            while next < others.count && others[next] <= sorted[i] { next += 1 }
            // Another held id lies between this one and the next: the run ends here.
            if next < others.count && others[next] < sorted[i + 1] { ends.append(i + 1) }
        }
        if !sorted.isEmpty { ends.append(sorted.count) }
        return ends
    }

    private func settleOnce(_ items: [SettleItem]) async throws {
        var acks: [Ack] = []
        var lost: [String] = []
        var deadLetters: [DeadLetter] = []
        acks.reserveCapacity(items.count)
        for item in items {
            switch item {
            case .ack(let id, let marker, let effects):
                acks.append(Ack(order: StreamID(id) ?? .zero, id: id, marker: marker, effects: effects))
            case .lost(let id): lost.append(id)
            case .deadLetter(let id, let fields, let reason, let error, let count):
                deadLetters.append(DeadLetter(id: id, fields: fields, reason: reason, error: error, deliveryCount: count))
            }
        }
        // The settle script checks ownership with one XPENDING range: it wants the ids in order.
        acks.sort { $0.order < $1.order }

        var commands: [[RedisArgument]] = []
        var scripts: [RedisScript] = []
        if !acks.isEmpty {
            switch configuration.settleMode {
            case .plain:
                commands.append(["XACK", RedisArgument(stream), RedisArgument(group)] + acks.map { RedisArgument($0.id) })
            case .idempotent:
                let buckets = markers.buckets()
                let ends = runEnds(of: acks.map(\.order))
                var args: [RedisArgument] = [
                    RedisArgument(group), RedisArgument(consumer), RedisArgument(Int(buckets.expireAtMs)), RedisArgument(acks.count),
                    RedisArgument(ends.count),
                ]
                args.append(contentsOf: ends.map { RedisArgument($0) })
                args.reserveCapacity(4 + acks.count * 3)
                for a in acks {
                    args.append(RedisArgument(a.id))
                    guard let marker = a.marker else { preconditionFailure("an idempotent ack without its marker: \(a.id)") }
                    args.append(RedisArgument(marker))
                    args.append(RedisArgument(a.effects.count))
                    for effect in a.effects {
                        args.append(RedisArgument(effect.count))
                        args.append(contentsOf: effect)
                    }
                }
                let keys = [buckets.current, buckets.previous, buckets.stale].map { RedisArgument($0) }
                commands.append(WorkerScripts.settle.evalSHAArguments(keys: [RedisArgument(stream)] + keys, arguments: args))
                scripts.append(WorkerScripts.settle)
            }
        }
        if !lost.isEmpty {
            commands.append(["XACK", RedisArgument(stream), RedisArgument(group)] + lost.map { RedisArgument($0) })
        }
        if !deadLetters.isEmpty {
            var args: [RedisArgument] = [RedisArgument(group), RedisArgument(consumer), RedisArgument(deadLetters.count)]
            for d in deadLetters {
                args += [RedisArgument(d.id), RedisArgument(d.reason), RedisArgument(d.error), RedisArgument(d.deliveryCount),
                         RedisArgument(d.fields.count * 2)]
                for f in d.fields {
                    args.append(RedisArgument(f.name))
                    args.append(RedisArgument(bytes: f.value))
                }
            }
            commands.append(
                WorkerScripts.deadLetter.evalSHAArguments(
                    keys: [RedisArgument(stream), RedisArgument(StreamKeys.deadLetter(stream: stream, group: group))], arguments: args))
            scripts.append(WorkerScripts.deadLetter)
        }

        var replies = try await pool.pipeline(commands)
        let notRun = replies.indices.filter { if case .error(let m) = replies[$0] { return m.hasPrefix("NOSCRIPT") } else { return false } }
        if !notRun.isEmpty {
            // A restarted server lost its script cache: a NOSCRIPT reply means that call did not
            // run. Load the scripts and send those calls again, only those: the others ran, and
            // their replies say what they did.
            for script in scripts { try await pool.send(["SCRIPT", "LOAD", RedisArgument(script.source)]) }
            let again = try await pool.pipeline(notRun.map { commands[$0] })
            for (k, index) in notRun.enumerated() { replies[index] = again[k] }
        }
        for reply in replies { try reply.throwingServerError() }

        var index = 0
        if !acks.isEmpty {
            let reply = replies[index]
            index += 1
            switch configuration.settleMode {
            case .plain:
                stats.add(.processed, acks.count, metrics: metrics)
            case .idempotent:
                let codes = reply.array?.map { $0.int ?? 0 } ?? []
                for code in codes {
                    switch code {
                    case 1: stats.add(.processed, metrics: metrics)
                    case 2: stats.add(.duplicates, metrics: metrics)
                    case 3: stats.add(.foreignSettlesRefused, metrics: metrics)
                    case 4: stats.add(.alreadySettled, metrics: metrics)
                    default: break
                    }
                }
                let refused = zip(acks, codes).filter { $0.1 == 3 }.map(\.0.id)
                if !refused.isEmpty {
                    logger.warning(
                        "another consumer owns these entries now; nothing applied or acked here",
                        metadata: ["ids": "\(refused.prefix(10))", "count": "\(refused.count)"])
                }
            }
        }
        if !lost.isEmpty {
            index += 1
            stats.add(.lostToTrimming, lost.count, metrics: metrics)
        }
        if !deadLetters.isEmpty {
            let codes = replies[index].array?.map { $0.int ?? 0 } ?? []
            stats.add(.deadLettered, codes.filter { $0 == 1 }.count, metrics: metrics)
            stats.add(.foreignSettlesRefused, codes.filter { $0 == 0 }.count, metrics: metrics)
        }
        release(items.map(\.id))
    }

    // MARK: - Leases

    /// Every lease/4, XCLAIM JUSTID (ownership checked) the entries this consumer holds, so that
    /// an entry's idle time never gets near the lease while its worker lives, even when the
    /// process is starved of CPU for a while.
    private func leaseLoop() async {
        let interval = configuration.lease / 4
        while !state.withLock({ $0.stopped }) {
            try? await Task.sleep(for: interval)
            await refreshLeases()
        }
    }

    private func refreshLeases() async {
        let ids = sortedIDs(state.withLock { $0.held })
        guard !ids.isEmpty else { return }
        for chunk in stride(from: 0, to: ids.count, by: 1000).map({ Array(ids[$0..<min($0 + 1000, ids.count)]) }) {
            do {
                let reply = try await pool.evaluate(
                    WorkerScripts.refreshLease, keys: [RedisArgument(stream)],
                    arguments: [RedisArgument(group), RedisArgument(consumer)] + chunk.map { RedisArgument($0) })
                let owned = Set(reply.array?.compactMap(\.string) ?? [])
                // Either settled meanwhile (fine) or claimed by another consumer after this
                // process stalled past its lease: then the settle will be refused.
                let stillHeld = state.withLock { s in chunk.filter { !owned.contains($0) && s.held.contains($0) } }
                if !stillHeld.isEmpty {
                    logger.debug("lease refresh: entries not ours any more", metadata: ["count": "\(stillHeld.count)"])
                }
            } catch {
                logger.warning("lease refresh failed", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: - Reclaiming

    /// Takes over entries idle for a lease or more (their consumer died or stalled), following
    /// XAUTOCLAIM's cursor to the end. Ids Redis reports deleted are counted as lost.
    private func reclaimLoop() async {
        let interval = max(.milliseconds(100), min(configuration.lease / 5, .seconds(1)))
        while !isDraining {
            await reclaimOnce()
            try? await Task.sleep(for: interval)
        }
    }

    func reclaimOnce() async {
        var cursor = "0-0"
        repeat {
            if isDraining { return }
            // Room reserved before claiming, as for reads. In the middle of a pass (more idle
            // entries follow the cursor), wait for room rather than for the next pass, a whole
            // interval later; at the start of one, claim only if there is room now.
            var reserved =
                cursor == "0-0"
                ? prefetched.tryAcquire(upTo: readChunk)
                : await prefetched.acquire(atLeast: readChunk / 2, upTo: readChunk)
            defer { prefetched.release(reserved) }
            if reserved == 0 || isDraining { return }
            do {
                let result = try await pool.send(
                    XAUTOCLAIM(
                        RedisArgument(stream), group: group, consumer: consumer, minIdle: configuration.lease, start: cursor,
                        count: reserved))
                cursor = result.nextCursor
                if !result.deletedIDs.isEmpty {
                    // Redis 7 already dropped them from the pending list; the XACK is for older
                    // servers and is harmless here.
                    _ = try? await pool.send(XACK(RedisArgument(stream), group: RedisArgument(group), ids: result.deletedIDs))
                    stats.add(.lostToTrimming, result.deletedIDs.count, metrics: metrics)
                    logger.error(
                        "pending entries were deleted from the stream before they were handled (trimmed?)",
                        metadata: ["count": "\(result.deletedIDs.count)", "ids": "\(result.deletedIDs.prefix(10))"])
                }
                guard !result.entries.isEmpty else { continue }
                let held = state.withLock { $0.held }
                let taken = result.entries.filter { !held.contains($0.id) }
                guard !taken.isEmpty else { continue }
                stats.add(.reclaimed, taken.count, metrics: metrics)
                logger.info("reclaimed entries from a dead or stalled consumer", metadata: ["count": "\(taken.count)"])
                let counts = try await deliveryCounts(of: taken.map(\.id))
                await dispatch(taken, deliveryCounts: counts, reserved: reserved)
                reserved = 0
            } catch let error as RedisError where error.code == .noGroup {
                return
            } catch {
                logger.warning("reclaim failed", metadata: ["error": "\(error)"])
                return
            }
        } while cursor != "0-0"
    }

    // MARK: - Membership

    /// Leaves the group if this consumer holds no pending entries (checked atomically).
    private func leaveGroupIfEmpty() async {
        do {
            let removed = try await pool.evaluate(
                WorkerScripts.leaveGroup, keys: [RedisArgument(stream)], arguments: [RedisArgument(group), RedisArgument(consumer)])
            if removed.int == 1 {
                logger.info("left the consumer group")
            } else {
                logger.warning("still holds pending entries; staying in the group so that they are reclaimed")
            }
        } catch {
            logger.warning("could not leave the consumer group", metadata: ["error": "\(error)"])
        }
    }

    /// Removes consumers idle for long that hold nothing.
    func removeIdleConsumers() async {
        do {
            let reply = try await pool.evaluate(
                WorkerScripts.removeIdleConsumers, keys: [RedisArgument(stream)],
                arguments: [RedisArgument(group), RedisArgument(milliseconds: configuration.removeIdleConsumersAfter), RedisArgument(consumer)])
            let names = reply.array?.compactMap(\.string) ?? []
            if !names.isEmpty { logger.info("removed idle consumers", metadata: ["consumers": "\(names)"]) }
        } catch {
            logger.debug("idle consumer clean-up failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Decodes an entry from a script reply.
enum StreamEntryDecoding {
    static func entry(_ reply: RESPValue) throws -> StreamEntry {
        guard let list = try? XRANGE("x").decode(.array([reply])), let entry = list.first else {
            throw RedisError(.unexpectedReply, "expected [id, fields], got \(reply)")
        }
        return entry
    }
}

extension RedisError {
    /// Server errors that pass (a restarting or busy server): retried, never blamed on the entry.
    fileprivate var isTransientServerError: Bool {
        ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY"].contains(code.name)
    }
}
