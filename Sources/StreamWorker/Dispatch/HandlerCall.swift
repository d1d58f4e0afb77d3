import Logging
import RedisClient

/// Calls the subscription's handler for a chunk of entries and says what each result means:
/// settle it (acked with its effects, or dead-lettered), or retry it. One path for both handler
/// forms: a per-entry handler gets chunks of one, a batch handler chunks of up to
/// ``chunkSize``; a retried entry always comes alone.
struct HandlerCall: Sendable {
    let context: SubscriptionContext

    /// Entries per call: 1 for a per-entry handler; for a batch handler a read's worth, at most
    /// ``WorkerConfiguration/maxInFlight`` (a chunk holds a handler slot per entry).
    var chunkSize: Int {
        guard context.subscription.batchHandler != nil else { return 1 }
        return max(1, min(context.configuration.readCount, context.configuration.maxInFlight))
    }

    /// Handles `items`, reporting each entry's outcome (by index) to `report`.
    func handle(_ items: [WorkItem], report: (Int, HandlingOutcome) -> Void) async {
        var handled: [Int] = []
        handled.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            if let settle = settleWithoutHandling(item) {
                report(index, .settle(settle))
            } else {
                handled.append(index)
            }
        }
        guard !handled.isEmpty else { return }
        let started = ContinuousClock.now
        if handled.count == 1 {
            let index = handled[0]
            let result: Result<HandlerOutcome, any Error>
            do {
                result = .success(try await context.subscription.handler(delivery(for: items[index])))
                context.metrics.handlerDuration.recordNanoseconds(nanoseconds(since: started))
            } catch {
                result = .failure(error)
            }
            report(index, outcome(of: items[index], result))
            return
        }
        guard let batchHandler = context.subscription.batchHandler else {
            preconditionFailure("a chunk of \(handled.count) entries for a per-entry handler")
        }
        let results = await batchHandler(handled.map { delivery(for: items[$0]) })
        guard results.count == handled.count else {
            let error = BatchResultMismatch(deliveries: handled.count, results: results.count)
            context.logger.error("batch handler result count mismatch; retrying the batch's entries", metadata: ["error": "\(error)"])
            for index in handled { report(index, .retry(error)) }
            return
        }
        // The histogram is per entry: each gets the batch's duration divided by its size.
        let each = nanoseconds(since: started) / Int64(handled.count)
        for (k, index) in handled.enumerated() {
            if case .success = results[k] { context.metrics.handlerDuration.recordNanoseconds(each) }
            report(index, outcome(of: items[index], results[k]))
        }
    }

    private func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = (ContinuousClock.now - start).components
        return elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000
    }

    /// Entries settled without calling the handler: deleted from the stream while pending, a
    /// known duplicate, or delivered more often than the maximum (consumers kept dying on it).
    private func settleWithoutHandling(_ item: WorkItem) -> SettleItem? {
        if item.entry.isDeleted {
            context.logger.error("pending entry no longer exists in the stream (trimmed or deleted)", metadata: ["id": "\(item.entry.id)"])
            return .lost(item)
        }
        if item.knownDuplicate {
            return .ack(item, effects: [])
        }
        let maximum = context.configuration.maxDeliveries
        if item.deliveryCount > maximum {
            return .deadLetter(
                item, reason: "delivered \(item.deliveryCount) times, more than the maximum \(maximum) (consumers died or stalled while handling it)",
                error: "")
        }
        return nil
    }

    private func delivery(for item: WorkItem) -> Delivery {
        Delivery(
            stream: context.stream, group: context.group, consumer: context.consumer, id: item.entry.id, fields: item.entry.fields,
            deliveryCount: item.deliveryCount)
    }

    /// What a handler's result means for its entry. Every result but "unavailable" says the
    /// downstream answered: it closes the circuit breaker.
    private func outcome(of item: WorkItem, _ result: Result<HandlerOutcome, any Error>) -> HandlingOutcome {
        switch result {
        case .success(let outcome):
            context.breaker.succeeded()
            return .settle(.ack(item, effects: outcome.effects))
        case .failure(let error):
            switch HandlerFailure(error) {
            case .invalid(let reason):
                context.breaker.succeeded()
                context.logger.error("invalid entry; moving it to the dead letters", metadata: ["id": "\(item.entry.id)", "reason": "\(reason)"])
                return .settle(.deadLetter(item, reason: reason, error: "\(error)"))
            case .unavailable:
                context.breaker.failed()
                return .retry(error)
            case .failed:
                context.breaker.succeeded()
                return .retry(error)
            }
        }
    }
}
