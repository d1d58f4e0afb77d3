import Logging
import RedisClient

/// Commits what the handlers decided, batch by batch: acks (with effects and markers in
/// idempotent mode), dead letters, and entries lost to trimming, in one round trip per batch.
///
/// Every step is safe to repeat (ownership is checked, markers are checked, XACK is
/// idempotent), so a settle that failed on the connection is retried until it succeeds or the
/// task is cancelled (the drain deadline): then the entries stay pending and another worker
/// reclaims them one lease later.
struct Settler: Sendable {
    let context: SubscriptionContext
    let markers: IdempotencyMarkers
    let queue: BatchQueue<SettleItem>

    init(context: SubscriptionContext, queue: BatchQueue<SettleItem>) {
        self.context = context
        self.queue = queue
        self.markers = IdempotencyMarkers(stream: context.identityStream, group: context.group, ttl: context.configuration.idempotencyTTL)
    }

    /// Settles until the queue is finished and empty, or the task is cancelled.
    func run() async {
        while true {
            let batching = context.configuration.settleBatching
            let items = await queue.next(filling: batching.target, within: batching.linger)
            if items.isEmpty { return }
            // Lua's unpack() takes a few thousand values at most: at most 1000 entries per script call.
            for start in stride(from: 0, to: items.count, by: 1000) {
                if Task.isCancelled { return }
                await settle(Array(items[start..<min(start + 1000, items.count)]))
            }
        }
    }

    private var logger: Logger { context.logger }

    private func settle(_ items: [SettleItem]) async {
        var attempt = 0
        while true {
            do {
                let failed = try await settleOnce(items)
                // Entries whose effects failed were neither marked nor acked (the others were):
                // their effects would fail the same way again.
                if !failed.isEmpty { await settle(failed) }
                return
            } catch {
                switch FailureKind(error) {
                case .cancelled:
                    return
                case .groupMissing:
                    logger.warning("consumer group vanished while settling; its pending entries went with it", metadata: ["count": "\(items.count)"])
                    context.held.release(items.map(\.item.id))
                    return
                case .serverError where items.count > 1:
                    // A script error that is no handler effect's (those come back as
                    // .effectsFailed): the settle script raises none after its first write, so
                    // nothing was applied and settling one by one applies nothing twice.
                    logger.warning("batch settle failed; settling one by one", metadata: ["error": "\(error)"])
                    for item in items { await settle([item]) }
                    return
                case .serverError:
                    // The same call fails the same way again: dead-letter the entry.
                    guard case .ack(let item, _) = items[0] else {
                        logger.error("settle failed", metadata: ["error": "\(error)"])
                        context.held.release(items.map(\.item.id))
                        return
                    }
                    let message = (error as? RedisError)?.message ?? "\(error)"
                    logger.error("settle failed; moving the entry to the dead letters", metadata: ["id": "\(item.entry.id)", "error": "\(message.clipped(toBytes: ClippedText.log))"])
                    await settle([.deadLetter(item, reason: "settle failed", error: message)])
                    return
                case .connectionLost, .transientServer, .other:
                    attempt += 1
                    logger.warning("settle failed; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                    do {
                        try await Task.sleep(for: context.redisBackoff(attempt: attempt))
                    } catch {
                        return
                    }
                }
            }
        }
    }

    /// The settle script for this configuration (a planted bug may leave a check out).
    private var settleScript: RedisScript {
        switch context.configuration.plantedBug {
        // Acked before handling, the entries are no longer pending: a worker with that bug applies
        // its effects without asking (with the owner check every settle was refused as foreign,
        // and nothing was applied even with no fault: the bug showed without a crash).
        case .noOwnerCheck, .ackBeforeEffects, .ackBeforeHandling: WorkerScripts.settle(checksOwner: false, checksMarkers: true)
        case .noMarkerCheck: WorkerScripts.settle(checksOwner: true, checksMarkers: false)
        case .noLeaseRefresh, nil: WorkerScripts.settle
        }
    }

    /// Settles `items` in one round trip. Returns the dead letters still to settle: acks whose
    /// effects failed (still held).
    private func settleOnce(_ items: [SettleItem]) async throws -> [SettleItem] {
        var acks: [SettleBatchCall.Ack] = []
        var lost: [WorkItem] = []
        var letters: [DeadLetterCall.Letter] = []
        acks.reserveCapacity(items.count)
        for item in items {
            switch item {
            case .ack(let item, let effects): acks.append(SettleBatchCall.Ack(item: item, effects: effects))
            case .lost(let item): lost.append(item)
            case .deadLetter(let item, let reason, let error): letters.append(DeadLetterCall.Letter(item: item, reason: reason, error: error))
            }
        }
        // The settle script checks ownership with one XPENDING range per run: ids in order.
        acks.sort { $0.item.id < $1.item.id }
        let stream = context.stream, group = context.group
        var plainAcked = 0

        var pipeline = ScriptPipeline()
        // The acks the settle script commits (all in idempotent mode; in plain mode those with
        // effects), and where its reply is.
        var settleCall: (index: Int, call: SettleBatchCall, acks: [SettleBatchCall.Ack])?
        if !acks.isEmpty {
            switch context.configuration.settleMode {
            case .plain:
                // Effects returned by a handler are applied here too, atomically with the XACK of
                // an entry this consumer still owns: a handler that returns .done(effects:)
                // expects them committed whatever the mode, and dropping them loses writes
                // silently. Plain mode only skips the markers (at-least-once: an entry
                // redelivered after a crash applies its effects again). Entries without effects
                // keep the bare XACK, the plain mode's cost.
                let (effectful, bare) = (acks.filter { !$0.effects.isEmpty }, acks.filter { $0.effects.isEmpty })
                if !bare.isEmpty {
                    _ = pipeline.add(command: XACK(context.streamKey, group: RedisArgument(group), ids: bare.map(\.item.entry.id)))
                    plainAcked = bare.count
                }
                if !effectful.isEmpty {
                    let call = SettleBatchCall(
                        script: WorkerScripts.settlePlain, stream: stream, group: group, consumer: context.consumer, buckets: nil,
                        acks: effectful, runEnds: context.held.runEnds(of: effectful.map(\.item.id)))
                    settleCall = (pipeline.add(call), call, effectful)
                }
            case .idempotent:
                if context.configuration.plantedBug == .ackBeforeEffects {
                    logger.critical("PLANTED BUG: acknowledging entries before and apart from their effects")
                    try await context.client.send(XACK(context.streamKey, group: RedisArgument(group), ids: acks.map(\.item.entry.id)))
                    // The effects follow as a step of their own, as a slow second call would: a
                    // window of a round trip (0.2 ms) was never hit by a chaos run's SIGKILLs
                    // (35 s, 3 kills: every effect applied, verdict VOID); 300 ms is.
                    try await Task.sleep(for: .milliseconds(300))
                }
                let call = SettleBatchCall(
                    script: settleScript, stream: stream, group: group, consumer: context.consumer, buckets: markers.buckets(), acks: acks,
                    runEnds: context.held.runEnds(of: acks.map(\.item.id)))
                settleCall = (pipeline.add(call), call, acks)
            }
        }
        if !lost.isEmpty {
            _ = pipeline.add(command: XACK(context.streamKey, group: RedisArgument(group), ids: lost.map(\.entry.id)))
        }
        var letterCall: (index: Int, call: DeadLetterCall)?
        if !letters.isEmpty {
            let call = DeadLetterCall(
                stream: stream, deadLetters: StreamKeys.deadLetter(stream: context.identityStream, group: group), group: group,
                consumer: context.consumer, letters: letters)
            letterCall = (pipeline.add(call), call)
        }

        let replies = try await pipeline.send(on: context.client)

        context.count(.processed, plainAcked)
        if plainAcked > 0 {
            for ack in acks where ack.effects.isEmpty { ack.item.span?.end(.applied) }
        }
        var failed: [SettleItem] = []
        if let (index, call, acks) = settleCall {
            let results = try call.decode(replies[index])
            var refused: [String] = []
            for (ack, result) in zip(acks, results) {
                switch result {
                case .applied:
                    context.count(.processed)
                    ack.item.span?.end(.applied)
                case .duplicate:
                    context.count(.duplicates)
                    ack.item.span?.end(.duplicate)
                case .alreadySettled:
                    context.count(.alreadySettled)
                    ack.item.span?.end(.duplicate)
                case .foreign:
                    context.count(.foreignSettlesRefused)
                    ack.item.span?.end(.foreign)
                    refused.append(ack.item.entry.id)
                case .effectsFailed(let error, let run):
                    // Its remaining effects would fail the same way on every retry. The error
                    // says how many were applied before the failure, for whoever replays it.
                    // The handler's words clipped first, so that the note (for whoever replays it)
                    // survives the letter's clipping (``ClippedText/deadLetter``) (a review).
                    let said = "\(error)".clipped(toBytes: ClippedText.deadLetter - 256)
                    let message = "\(said) (effect \(run + 1) of \(ack.effects.count) failed; \(run) applied before it)"
                    logger.error("handler effects failed; moving the entry to the dead letters", metadata: ["id": "\(ack.item.entry.id)", "error": "\(message.clipped(toBytes: ClippedText.log))"])
                    failed.append(.deadLetter(ack.item, reason: "effects failed", error: message))
                }
            }
            if !refused.isEmpty {
                logger.warning(
                    "another consumer owns these entries now; nothing applied or acked here",
                    metadata: ["ids": "\(refused.prefix(10))", "count": "\(refused.count)"])
            }
        }
        if !lost.isEmpty { context.count(.lostToTrimming, lost.count) }
        for item in lost { item.span?.end(.lost) }
        if let (index, call) = letterCall {
            let results = try call.decode(replies[index])
            context.count(.deadLettered, results.filter { $0 == .moved }.count)
            context.count(.foreignSettlesRefused, results.filter { $0 == .notOwned }.count)
            for (letter, result) in zip(letters, results) {
                letter.item.span?.end(result == .moved ? .deadLettered : .foreign, error: result == .moved ? letter.reason : nil)
            }
        }
        if failed.isEmpty {
            context.held.release(items.map(\.item.id))
        } else {
            // The failed ones stay held (their lease refreshed) until they are dead-lettered.
            let stillHeld = Set(failed.map(\.item.id))
            context.held.release(items.map(\.item.id).filter { !stillHeld.contains($0) })
        }
        return failed
    }
}
