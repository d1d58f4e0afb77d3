import RedisClient

/// One reader: XREADGROUP on a connection of its own (so that a blocked read never holds a pool
/// connection), to the server that owns the stream (its slot's primary on a Redis Cluster).
/// Several run side by side: Redis hands each XREADGROUP `>` different entries, and one reply
/// is parsed while the next is on its way.
///
/// A read that fails on the connection (lost, MOVED after a resharding or a failover, a
/// cluster that is healing) closes it; after a backoff the reader asks the client for a new
/// one, which reaches the slot's owner of the moment.
///
/// Ends when the drain starts (after the read in progress) or when its task is cancelled
/// (a blocked read is interrupted).
struct EntryReader: Sendable {
    let context: SubscriptionContext
    let intake: WorkIntake
    let membership: GroupMembership
    /// The first reader of a stable consumer re-reads its pending entries (id 0) first.
    let rereadsPending: Bool
    /// Open once the first reader has re-read this consumer's pending entries: no reader asks
    /// for new entries before.
    let pendingReread: AsyncSemaphore

    /// Where the reader is, kept across its connections.
    private struct Position {
        /// The id after which this consumer's own pending entries are re-read; nil once done.
        var pendingCursor: String?
        /// The last read of new entries came back empty: the stream is idle for this group.
        var idle = true
        /// Reads failed in a row.
        var failures = 0
    }

    func run() async {
        // A stable consumer name may have pending entries from its previous life: the first
        // reader re-reads them (id 0) before any reader asks for new ones (>).
        var position = Position(pendingCursor: context.configuration.consumerName != nil && rereadsPending ? "0" : nil)
        if position.pendingCursor == nil {
            do {
                try await pendingReread.acquire(1)
            } catch {
                return
            }
            pendingReread.release(1)
        }
        defer {
            if position.pendingCursor != nil { pendingReread.release(1) }
            // Ending while failing: the others' recovery must not wait for this one.
            if position.failures > 0 { _ = context.redisWarnings.readerRecovered() }
        }
        while !context.drain.isFired {
            do {
                try await context.client.withDedicatedConnection(forKeys: [context.streamKey]) { connection in
                    try await read(on: connection, from: &position)
                }
                return
            } catch {
                switch FailureKind(error) {
                case .cancelled:
                    return
                case .groupMissing:
                    do {
                        try await membership.recreateGroup(after: error)
                    } catch {
                        return
                    }
                case .connectionLost, .transientServer, .serverError, .other:
                    if position.failures == 0 { context.redisWarnings.readerFailing() }
                    position.failures += 1
                    context.redisWarnings.reads.log(context.logger, "read failed; retrying", metadata: ["error": "\(error)", "attempt": "\(position.failures)"])
                    do {
                        guard try await context.drain.sleep(for: context.redisBackoff(attempt: position.failures)) else { return }
                    } catch {
                        return
                    }
                }
            }
        }
    }

    /// Reads on one connection until the drain starts (returns) or a call fails (throws: the
    /// caller decides, and reads on a new connection).
    private func read(on connection: RedisConnection, from position: inout Position) async throws {
        let configuration = context.configuration
        while !context.drain.isFired {
            // Room is reserved before reading (readers run side by side, and the room is shared
            // by the process's subscriptions). While entries flow: a non-blocking read of a
            // whole read's worth, waited for (reading as soon as some slots free makes small
            // reads, and every read's entries go on as one pre-check and, mostly, one settle:
            // with the room shared by the 12 readers of 6 partitions, reads that took half a
            // read's worth carried 55 entries against 100 on one stream, and the cluster's Redis
            // CPU per event was 1.25x one node's). While idle: a blocking read of one entry, so
            // that a reader parked in XREADGROUP BLOCK holds one slot, not a read's worth that
            // other subscriptions and the reclaimer would wait for.
            let blocking = position.idle && position.pendingCursor == nil
            var reserved =
                blocking
                ? try await intake.prefetched.acquire(atLeast: 1, upTo: 1)
                : try await intake.prefetched.acquire(atLeast: intake.readChunk, upTo: intake.readChunk)
            // What the intake did not take is given back at the end of the iteration.
            defer { intake.prefetched.release(reserved) }
            if context.drain.isFired { return }
            let batches = try await connection.send(
                XREADGROUP(
                    group: context.group, consumer: context.consumer, streams: [(context.stream, position.pendingCursor ?? ">")],
                    count: reserved, block: blocking ? configuration.block : nil))
            if position.failures > 0 {
                position.failures = 0
                // Said once every reader of the worker reads again, not when one of several does.
                if context.redisWarnings.readerRecovered() { context.redisWarnings.reads.passed(context.logger, "reads work again") }
            }
            let entries = batches.first?.entries ?? []
            if !entries.isEmpty, !(try await context.entriesReplicated(on: connection, blockingReadOf: blocking ? entries.last?.id : nil)) {
                return
            }
            if let cursor = position.pendingCursor {
                if entries.isEmpty {
                    position.pendingCursor = nil
                    pendingReread.release(1)
                    continue
                }
                position.pendingCursor = entries.last?.id ?? cursor
                let counts = try await intake.deliveryCounts(of: entries)
                let taken = reserved
                reserved = 0
                try await intake.accept(entries, deliveryCounts: counts, reserved: taken)
            } else {
                position.idle = entries.isEmpty
                if !entries.isEmpty {
                    let taken = reserved
                    reserved = 0
                    try await intake.accept(entries, deliveryCounts: [:], reserved: taken)
                }
            }
        }
    }
}
