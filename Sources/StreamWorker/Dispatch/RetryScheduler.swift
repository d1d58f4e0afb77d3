import RedisClient

/// After a handler failed (its slot released): waits out the backoff, re-delivers the entry to
/// this consumer (Redis counts the delivery) and handles it again, until it succeeds, is
/// dead-lettered, or is left pending for another worker (on drain or cancellation).
struct RetryScheduler: Sendable {
    let context: SubscriptionContext
    let call: HandlerCall
    let permits: AsyncSemaphore
    let settled: BatchQueue<SettleItem>

    func retry(_ first: WorkItem, after firstError: any Error) async {
        var item = first
        var error = firstError
        let configuration = context.configuration
        while true {
            context.count(.failed)
            if item.deliveryCount >= configuration.maxDeliveries {
                settled.append(
                    .deadLetter(
                        item, reason: "failed \(item.deliveryCount) deliveries (maximum \(configuration.maxDeliveries))", error: "\(error)"))
                return
            }
            context.logger.debug(
                "handler failed; will retry", metadata: ["id": "\(item.entry.id)", "deliveries": "\(item.deliveryCount)", "error": "\(error)"])
            do {
                guard try await context.drain.sleep(for: configuration.retryBackoff.delay(attempt: item.deliveryCount)),
                    let next = try await claim(item)
                else {
                    // Draining, or no longer ours: leave it pending; whoever owns it settles it.
                    context.held.release([item.id])
                    return
                }
                context.count(.retried)
                try await permits.acquire(1)
                item = next
            } catch {
                return
            }
            var outcome: HandlingOutcome?
            await call.handle([item]) { _, result in outcome = result }
            permits.release(1)
            switch outcome {
            case .settle(let settle):
                settled.append(settle)
                return
            case .retry(let failure):
                error = failure
            case nil:
                preconditionFailure("a handled entry without an outcome")
            }
        }
    }

    /// Re-delivers the entry to this consumer for a retry (counts a delivery in Redis); nil when
    /// it is not ours any more or was deleted. Throws only `CancellationError`.
    private func claim(_ item: WorkItem) async throws -> WorkItem? {
        let next = item.deliveryCount + 1
        var attempt = 0
        while true {
            do {
                let call = RetryClaimCall(stream: context.stream, group: context.group, consumer: context.consumer, id: item.entry.id, deliveryCount: next)
                switch try await context.pool.run(call) {
                case .claimed:
                    return item.redelivered(deliveryCount: next)
                case .deleted:
                    context.count(.lostToTrimming)
                    context.logger.error("entry was deleted from the stream before its retry", metadata: ["id": "\(item.entry.id)"])
                    return nil
                case .foreign:
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
