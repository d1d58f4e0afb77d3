import RedisClient

/// After a handler failed (its slot released): waits, re-delivers the entry to this consumer
/// and handles it again, until it succeeds, is dead-lettered, or is left pending for another
/// worker (on drain or cancellation).
///
/// Two policies (``HandlerFailure``): an entry whose downstream is unavailable is retried for
/// ``WorkerConfiguration/unavailableRetryWindow`` without counting deliveries, each attempt
/// admitted by the circuit breaker (which spaces the probes); any other failure is retried with
/// ``WorkerConfiguration/retryBackoff`` until Redis has delivered it
/// ``WorkerConfiguration/maxDeliveries`` times. Every failed attempt is logged at warning with
/// its reason, at most once per interval per subscription, and the last one at error (by
/// ``HandlerCall``: a per-entry handling's lines in its trace).
struct RetryScheduler: Sendable {
    let context: SubscriptionContext
    let call: HandlerCall
    let permits: AsyncSemaphore
    let settled: BatchQueue<SettleItem>

    func retry(_ first: WorkItem, after firstError: any Error) async {
        var item = first
        var error = firstError
        let configuration = context.configuration
        /// When this worker first saw the entry's downstream unavailable.
        var unavailableSince: ContinuousClock.Instant?
        while true {
            // The failure was logged where the handling ended (``HandlerCall``).
            context.count(.failed)
            let failure = HandlerFailure(error)
            let delay: Duration
            let nextCount: Int
            switch failure {
            case .unavailable:
                let since = unavailableSince ?? .now
                unavailableSince = since
                if ContinuousClock.now - since >= configuration.unavailableRetryWindow {
                    settled.append(
                        .deadLetter(
                            item, reason: "downstream unavailable for longer than the retry window (\(configuration.unavailableRetryWindow))",
                            error: "\(error)"))
                    return
                }
                // The breaker spaces the attempts while the downstream is down; this delay only
                // keeps a flapping downstream from being retried in a tight loop.
                delay = configuration.retryBackoff.delay(attempt: 1)
                nextCount = item.deliveryCount
            case .failed, .invalid:
                if item.deliveryCount >= configuration.maxDeliveries {
                    settled.append(
                        .deadLetter(
                            item, reason: "failed \(item.deliveryCount) deliveries (maximum \(configuration.maxDeliveries))", error: "\(error)"))
                    return
                }
                delay = configuration.retryBackoff.delay(attempt: item.deliveryCount)
                nextCount = item.deliveryCount + 1
            }
            // Not dead-lettered: this handling ends here; the next one has a span of its own.
            item.span?.end(.retried, error: "\(error)")
            let probe: Bool
            do {
                guard try await context.drain.sleep(for: delay),
                    let next = try await claim(item, deliveryCount: nextCount)
                else {
                    // Draining, or no longer ours: leave it pending; whoever owns it settles it.
                    context.held.release([item.id])
                    return
                }
                context.count(.retried)
                item = next
                // A drain while the breaker holds it back: leave it pending for later.
                guard let admitted = try await context.drain.untilFired({ try await context.breaker.admit() }) else {
                    context.held.release([item.id])
                    return
                }
                probe = admitted
                try await permits.acquire(1)
            } catch {
                return
            }
            var outcome: HandlingOutcome?
            await call.handle([item]) { _, result in outcome = result }
            permits.release(1)
            if probe { context.breaker.endProbe() }
            switch outcome {
            case .settle(let settle):
                settled.append(settle)
                return
            case .retry(let failed, let failure):
                item = failed
                error = failure
            case nil:
                preconditionFailure("a handled entry without an outcome")
            }
        }
    }

    /// Re-delivers the entry to this consumer for a retry, setting Redis's delivery counter to
    /// `next`; nil when it is not ours any more or was deleted. Throws only `CancellationError`.
    private func claim(_ item: WorkItem, deliveryCount next: Int) async throws -> WorkItem? {
        var attempt = 0
        while true {
            do {
                let call = RetryClaimCall(stream: context.stream, group: context.group, consumer: context.consumer, id: item.entry.id, deliveryCount: next)
                switch try await context.client.run(call) {
                case .claimed:
                    return item.redelivered(deliveryCount: next)
                case .deleted:
                    context.count(.lostToTrimming)
                    context.logger.error("entry was deleted from the stream before its retry", metadata: ["id": "\(item.entry.id)"])
                    return nil
                case .foreign:
                    context.count(.foreignSettlesRefused)
                    context.logger.warning("entry was claimed by another consumer before its retry", metadata: ["id": "\(item.entry.id)"])
                    return nil
                }
            } catch {
                let kind = FailureKind(error)
                if kind == .cancelled { throw CancellationError() }
                attempt += 1
                context.logger.warning("retry claim failed", metadata: ["id": "\(item.entry.id)", "error": "\(error)", "attempt": "\(attempt)"])
                // Not ours to retry for ever: after a few failures the entry is left pending and
                // reclaimed one lease later, by this worker or another.
                guard kind.isRetryable, attempt < 5, try await context.drain.sleep(for: context.redisBackoff(attempt: attempt)) else { return nil }
            }
        }
    }
}

/// ``WorkerScripts/retryClaim``.
struct RetryClaimCall: ScriptCall {
    enum Reply: Int, Sendable {
        /// Re-delivered to this consumer with the new delivery count.
        case claimed = 1
        /// Another consumer owns it now.
        case foreign = 0
        /// Deleted from the stream (acked).
        case deleted = -1
    }

    var script: RedisScript { WorkerScripts.retryClaim }
    let keys: [RedisArgument]
    let arguments: [RedisArgument]

    init(stream: String, group: String, consumer: String, id: String, deliveryCount: Int) {
        keys = [RedisArgument(stream)]
        arguments = [RedisArgument(group), RedisArgument(consumer), RedisArgument(id), RedisArgument(deliveryCount)]
    }

    func decode(_ reply: RESPValue) throws -> Reply {
        guard let code = reply.int, let result = Reply(rawValue: code) else { throw unexpected(reply) }
        return result
    }
}
