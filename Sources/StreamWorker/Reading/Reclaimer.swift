import RedisClient

/// Takes over entries idle for a lease or more (their consumer died or stalled), following
/// XAUTOCLAIM's cursor to the end, a pass every lease/5 (between 100 ms and 1 s). Ids Redis
/// reports deleted are acked and counted as lost. Ends when the drain starts or its task is
/// cancelled.
///
/// Guarantee: a dead consumer's entries are taken over while a backlog lasts, in turn with the
/// readers, not after it (`ReclaimerTests`); none while the subscription's breaker is
/// open (its downstream is down).
struct Reclaimer: Sendable {
    let context: SubscriptionContext
    let intake: WorkIntake

    func run() async {
        let interval = max(.milliseconds(100), min(context.configuration.lease / 5, .seconds(1)))
        do {
            while !context.drain.isFired {
                try await reclaimOnce()
                guard try await context.drain.sleep(for: interval) else { return }
            }
        } catch {
            return
        }
    }

    /// One pass. Throws only `CancellationError`.
    func reclaimOnce() async throws(CancellationError) {
        var cursor = "0-0"
        repeat {
            if context.drain.isFired { return }
            // Nothing is taken over while the breaker holds the handlers back: the entries would
            // only wait behind it, and each take adds one to their delivery count. A 300-s
            // chaos run whose workers died and restarted during msg outages dead-lettered 127
            // entries "delivered 6 times" that no handler had ever been given (seed 1303). Once
            // its period is over a taken entry may be the probe, so a breaker that has no
            // caller left to probe with cannot stop the reclaim for good.
            if context.breaker.isHoldingBack { return }
            // Room reserved before claiming, as for reads. In the middle of a pass (more idle
            // entries follow the cursor), wait for room rather than for the next pass, a whole
            // interval later. At the start of one, claim at once if there is room; if not, wait
            // for room only when something is idle past the lease: while a backlog lasts the
            // readers always wait for room, so a pass that took only free room never ran (a
            // killed worker's entries were reclaimed 263 s after its death, at the end of a
            // 300-s chaos run's backlog, seed 1303 replicated). Waiting, the reclaimer takes its
            // turn with the readers (the semaphore is FIFO).
            var reserved: Int
            if cursor == "0-0" {
                reserved = intake.prefetched.tryAcquire(upTo: intake.readChunk)
                if reserved == 0 {
                    guard await anythingIdle() else { return }
                    reserved = try await intake.prefetched.acquire(atLeast: 1, upTo: intake.readChunk)
                }
            } else {
                reserved = try await intake.prefetched.acquire(atLeast: intake.readChunk / 2, upTo: intake.readChunk)
            }
            defer { intake.prefetched.release(reserved) }
            // (The breaker may have opened while this waited for room.)
            if reserved == 0 || context.drain.isFired || context.breaker.isHoldingBack { return }
            do {
                let claim = XAUTOCLAIM(
                    context.streamKey, group: context.group, consumer: context.consumer, minIdle: context.configuration.lease,
                    start: cursor, count: reserved)
                guard let result = try await claimReplicated(claim) else { return }
                cursor = result.nextCursor
                if !result.deletedIDs.isEmpty { try await countDeleted(result.deletedIDs) }
                let taken = result.entries.filter { notHeld($0.id) }
                guard !taken.isEmpty else { continue }
                context.count(.reclaimed, taken.count)
                context.logger.info("reclaimed entries from a dead or stalled consumer", metadata: ["count": "\(taken.count)"])
                let counts = try await intake.deliveryCounts(of: taken)
                let handed = reserved
                reserved = 0
                try await intake.accept(taken, deliveryCounts: counts, reserved: handed)
            } catch {
                switch FailureKind(error) {
                case .cancelled: throw CancellationError()
                case .groupMissing: return
                default:
                    context.redisWarnings.reclaims.log(context.logger, "reclaim failed", metadata: ["error": "\(error)"])
                    return
                }
            }
        } while cursor != "0-0"
    }

    /// Whether an entry this process does not hold has been idle for a lease or more (one
    /// XPENDING ... IDLE; false when it fails: the next pass asks again).
    private func anythingIdle() async -> Bool {
        do {
            let idle = try await context.client.send(
                XPENDINGDetail(context.streamKey, group: context.group, minIdle: context.configuration.lease, count: 16))
            return idle.contains { notHeld($0.id) }
        } catch {
            return false
        }
    }

    /// Not one of this process's entries in flight (an id Redis sent that does not parse counts
    /// as not held).
    private func notHeld(_ id: String) -> Bool {
        StreamID(id).map { !context.held.contains($0) } ?? true
    }

    /// Claims; with a replica confirmation, on one connection that then waits for the replicas
    /// (nil: the drain started meanwhile, the claimed entries stay pending to this consumer).
    private func claimReplicated(_ claim: XAUTOCLAIM) async throws -> XAUTOCLAIM.Response? {
        guard context.configuration.replicaConfirmation != nil else { return try await context.client.send(claim) }
        return try await context.client.withConnection(forKeys: [context.streamKey]) { connection in
            let result = try await connection.send(claim)
            if result.entries.isEmpty { return result }
            return try await context.entriesReplicated(on: connection) ? result : nil
        }
    }

    private func countDeleted(_ ids: [String]) async throws {
        // Redis 7 already dropped them from the pending list; the XACK is for older servers
        // and is harmless here.
        try await context.client.send(XACK(context.streamKey, group: RedisArgument(context.group), ids: ids))
        context.count(.lostToTrimming, ids.count)
        context.logger.error(
            "pending entries were deleted from the stream before they were handled (trimmed?)",
            metadata: ["count": "\(ids.count)", "ids": "\(ids.prefix(10))"])
    }
}
