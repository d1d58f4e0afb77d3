import RedisClient

/// The one source of work items: the readers and the reclaimer hand what they got here. Entries
/// already held are skipped (a slow reclaim of our own); the rest become ``WorkItem``s that go
/// to the marker pre-check (idempotent mode) or straight to the handlers.
struct WorkIntake: Sendable {
    let context: SubscriptionContext
    /// Read-ahead slots, shared by the process's subscriptions: taken when entries are read or
    /// reclaimed, returned when their handler starts. Reads wait for these, never for a
    /// handler to finish.
    let prefetched: AsyncSemaphore
    /// Entries waiting for the check of their markers (idempotent mode).
    let prechecks: BatchQueue<WorkItem>
    /// Entries ready for a handler.
    let work: BatchQueue<WorkItem>

    /// The most one read (or one reclaim) reserves: a read count, but at most a share of the
    /// read-ahead room such that the readers, blocked in XREADGROUP with their room reserved
    /// while the stream is idle, still leave room for the reclaimer.
    var readChunk: Int {
        let c = context.configuration
        return max(1, min(c.readCount, c.prefetch / (c.readers + 1)))
    }

    /// Hands entries on. `reserved`: read-ahead slots the caller took for these entries; the
    /// intake takes them over (gives back what it does not need, waits for any more it needs).
    /// Throws `CancellationError` only when cancelled while waiting for more room.
    func accept(_ entries: [StreamEntry], deliveryCounts: [String: Int], reserved: Int) async throws(CancellationError) {
        let fresh = context.held.take(entries)
        if reserved > fresh.count { prefetched.release(reserved - fresh.count) }
        guard !fresh.isEmpty else { return }
        context.count(.delivered, fresh.count)
        if context.configuration.plantedBug == .ackBeforeHandling {
            context.logger.critical("PLANTED BUG: acknowledging entries before handling them")
            do {
                try await context.client.send(XACK(context.streamKey, group: RedisArgument(context.group), ids: fresh.map(\.0.id)))
            } catch {
                context.logger.warning("planted early ack failed", metadata: ["error": "\(error)"])
            }
        }
        if fresh.count > reserved {
            do {
                try await prefetched.acquire(fresh.count - reserved)
            } catch {
                prefetched.release(min(reserved, fresh.count))
                context.held.release(fresh.map(\.1))
                throw error
            }
        }
        let idempotent = context.configuration.settleMode == .idempotent
        let items = fresh.map { entry, id in
            WorkItem(
                entry: entry, id: id, deliveryCount: deliveryCounts[entry.id] ?? 1,
                marker: idempotent ? (entry.string("event_id") ?? "\(context.identityStream)/\(context.identityID(of: entry))") : nil)
        }
        if idempotent {
            prechecks.append(contentsOf: items)
        } else {
            work.append(contentsOf: items)
        }
    }

    /// Redis's delivery counters for ids this consumer holds (re-read or reclaimed entries).
    func deliveryCounts(of entries: [StreamEntry]) async throws -> [String: Int] {
        let sorted = entries.map { (StreamID($0.id) ?? .zero, $0.id) }.sorted { $0.0 < $1.0 }
        guard let first = sorted.first?.1, let last = sorted.last?.1 else { return [:] }
        let pending = try await context.client.send(
            XPENDINGDetail(
                context.streamKey, group: context.group, start: first, end: last, count: entries.count * 2 + 64, consumer: context.consumer))
        return Dictionary(pending.map { ($0.id, $0.deliveryCount) }, uniquingKeysWith: max)
    }
}
