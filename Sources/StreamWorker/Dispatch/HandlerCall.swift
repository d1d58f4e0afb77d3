import Logging
import RedisClient
import Tracing

/// Calls the subscription's handler for a chunk of entries and says what each result means:
/// settle it (acked with its effects, or dead-lettered), or retry it. One path for both handler
/// forms: a per-entry handler gets chunks of one, a batch handler chunks of up to
/// ``chunkSize``; a retried entry always comes alone.
struct HandlerCall: Sendable {
    let context: SubscriptionContext
    /// Starts a span per handling (resolved where the subscription runs).
    let tracer: EventTracer

    init(context: SubscriptionContext) {
        self.context = context
        self.tracer = EventTracer(stream: context.identityStream)
    }

    /// Entries per call: 1 for a per-entry handler; for a batch handler a read's worth, at most
    /// ``WorkerConfiguration/maxInFlight`` (a chunk holds a handler slot per entry).
    var chunkSize: Int {
        guard context.subscription.batchHandler != nil else { return 1 }
        return max(1, min(context.configuration.readCount, context.configuration.maxInFlight))
    }

    /// Handles `items`, reporting each entry's outcome (by index) to `report`.
    func handle(_ items: [WorkItem], report: (Int, HandlingOutcome) -> Void) async {
        if items.count == 1 {
            // The per-entry path (every entry of a per-entry handler, every retry): no index list.
            var item = items[0]
            let trace: ServiceContext
            (trace, item.span) = tracer.start(item, context: context)
            if let settle = settleWithoutHandling(item, in: trace) {
                report(0, .settle(settle))
            } else {
                report(0, await handleOne(item, in: trace))
            }
            return
        }
        var items = items
        var traces: [ServiceContext] = []
        traces.reserveCapacity(items.count)
        var handled: [Int] = []
        handled.reserveCapacity(items.count)
        for index in items.indices {
            let trace: ServiceContext
            (trace, items[index].span) = tracer.start(items[index], context: context)
            traces.append(trace)
            if let settle = settleWithoutHandling(items[index], in: trace) {
                report(index, .settle(settle))
            } else {
                handled.append(index)
            }
        }
        if handled.count == 1 { report(handled[0], await handleOne(items[handled[0]], in: traces[handled[0]])) }
        guard handled.count > 1 else { return }
        let started = ContinuousClock.now
        guard let batchHandler = context.subscription.batchHandler else {
            preconditionFailure("a chunk of \(handled.count) entries for a per-entry handler")
        }
        // One call for many entries, each of its own trace: the call runs in none of them (each
        // entry's span still records its outcome).
        let results = await batchHandler(handled.map { delivery(for: items[$0]) })
        guard results.count == handled.count else {
            let error = BatchResultMismatch(deliveries: handled.count, results: results.count)
            context.logger.error("batch handler result count mismatch; retrying the batch's entries", metadata: ["error": "\(error)"])
            for index in handled { report(index, .retry(items[index], error)) }
            return
        }
        // The histogram is per entry: each gets the batch's duration divided by its size.
        let each = nanoseconds(since: started) / Int64(handled.count)
        for (k, index) in handled.enumerated() {
            if case .success = results[k] { context.metrics.handlerDuration.recordNanoseconds(each) }
            report(index, outcome(of: items[index], results[k]))
        }
    }

    /// One entry, one handler call (a batch handler's is called with a batch of one), in the
    /// context of its span: what the handler logs, and what the runtime logs of its outcome (a
    /// failure, a dead letter), carries the trace id, and what it calls (a mail) continues the
    /// trace. (A batch of many runs in no entry's trace, and neither do its outcomes' lines.)
    private func handleOne(_ item: WorkItem, in trace: ServiceContext) async -> HandlingOutcome {
        let started = ContinuousClock.now
        let handler = context.subscription.handler
        let delivery = delivery(for: item)
        return await ServiceContext.withValue(trace) {
            do {
                let result = try await handler(delivery)
                context.metrics.handlerDuration.recordNanoseconds(nanoseconds(since: started))
                return outcome(of: item, .success(result))
            } catch {
                return outcome(of: item, .failure(error))
            }
        }
    }

    private func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = (ContinuousClock.now - start).components
        return elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000
    }

    /// Entries settled without calling the handler: deleted from the stream while pending, an
    /// `event_id` that cannot identify it (``Delivery/eventIDProblem(in:)``), a known
    /// duplicate, or delivered more often than the maximum (consumers kept dying on it).
    /// Its log lines are written in the handling's trace, `trace`.
    private func settleWithoutHandling(_ item: WorkItem, in trace: ServiceContext) -> SettleItem? {
        if item.entry.isDeleted {
            ServiceContext.withValue(trace) {
                context.logger.error("pending entry no longer exists in the stream (trimmed or deleted)", metadata: ["id": "\(item.entry.id)"])
            }
            return .lost(item)
        }
        // Before the duplicate check: such entries share one marker, so all but the first would
        // look like duplicates of it.
        if let problem = Delivery.eventIDProblem(in: item.entry.fields) {
            ServiceContext.withValue(trace) {
                context.logger.error("invalid entry; moving it to the dead letters", metadata: ["id": "\(item.entry.id)", "reason": "\(problem.clipped(toBytes: ClippedText.log))"])
            }
            return .deadLetter(item, reason: problem, error: "")
        }
        if item.knownDuplicate {
            return .ack(item, effects: [])
        }
        let maximum = context.configuration.maxDeliveries
        if item.deliveryCount > maximum {
            ServiceContext.withValue(trace) {
                context.logger.error(
                    "entry delivered more often than the maximum; moving it to the dead letters",
                    metadata: ["id": "\(item.entry.id)", "deliveries": "\(item.deliveryCount)"])
            }
            return .deadLetter(
                item, reason: "delivered \(item.deliveryCount) times, more than the maximum \(maximum) (consumers died or stalled while handling it)",
                error: "")
        }
        return nil
    }

    /// What the handler sees: a replayed entry as the original delivery (its stream, id and
    /// fields), so that its event id and idempotency key are the same.
    private func delivery(for item: WorkItem) -> Delivery {
        guard context.origin != nil else {
            return Delivery(
                stream: context.stream, group: context.group, consumer: context.consumer, id: item.entry.id, fields: item.entry.fields,
                deliveryCount: item.deliveryCount)
        }
        return Delivery(
            stream: context.identityStream, group: context.group, consumer: context.consumer, id: context.identityID(of: item.entry),
            fields: item.entry.fields.filter { $0.name != "replayed_from" }, deliveryCount: item.deliveryCount)
    }

    /// A failed handling, at warning, at most once per interval per subscription
    /// (``RetryScheduler`` retries it).
    private func logRetry(_ item: WorkItem, _ error: any Error) {
        context.failureWarnings.log(
            context.logger, "handler failed; will retry",
            metadata: ["id": "\(item.entry.id)", "deliveries": "\(item.deliveryCount)", "reason": "\("\(error)".clipped(toBytes: ClippedText.log))"])
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
                context.logger.error("invalid entry; moving it to the dead letters", metadata: ["id": "\(item.entry.id)", "reason": "\(reason.clipped(toBytes: ClippedText.log))"])
                return .settle(.deadLetter(item, reason: reason, error: "\(error)"))
            case .unavailable:
                context.breaker.failed()
                logRetry(item, error)
                return .retry(item, error)
            case .failed:
                context.breaker.succeeded()
                if item.deliveryCount >= context.configuration.maxDeliveries {
                    // ``RetryScheduler`` dead-letters it (it decides on the same count).
                    context.logger.error(
                        "handler failed its last delivery; moving the entry to the dead letters",
                        metadata: ["id": "\(item.entry.id)", "deliveries": "\(item.deliveryCount)", "reason": "\("\(error)".clipped(toBytes: ClippedText.log))"])
                } else {
                    logRetry(item, error)
                }
                return .retry(item, error)
            }
        }
    }
}
