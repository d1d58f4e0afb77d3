import Tracing

/// What one handling of one entry records on its span: the messaging attributes of
/// OpenTelemetry's semantic conventions, the worker's own, and the outcome.
///
/// A tracer that adopts ``EventHandlingTracer`` keeps this value as it is; any other tracer gets
/// it as `SpanAttributes` (``forEachAttribute(_:)``) when the span ends.
public struct EventHandlingRecord: Sendable {
    /// `messaging.destination.name`: the stream the entry belongs to (a replay's origin).
    public var stream: String
    /// `messaging.consumer.group.name`.
    public var group: String
    /// `worker.consumer`.
    public var consumer: String
    /// `messaging.message.id`: the entry's id in ``stream``.
    public var messageID: String
    /// `worker.delivery_count`: Redis's delivery counter of this handling.
    public var deliveryCount: Int
    /// `worker.outcome`: applied, duplicate, retried, dead-lettered, lost, foreign or abandoned.
    public var outcome: String
    /// `worker.error`: why the handling failed, or the dead letter's reason.
    public var error: String?

    public init(stream: String, group: String, consumer: String, messageID: String, deliveryCount: Int, outcome: String, error: String? = nil) {
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.messageID = messageID
        self.deliveryCount = deliveryCount
        self.outcome = outcome
        self.error = error
    }

    /// The outcome of a handling that no path ended: the entry was let go (a drain, a
    /// cancellation, a settle given up) and is left pending for another worker.
    public static let abandoned = "abandoned"

    /// Each attribute with its name, in a fixed order.
    public func forEachAttribute(_ body: (String, SpanAttribute) -> Void) {
        body("messaging.system", .string("redis"))
        body("messaging.destination.name", .string(stream))
        body("messaging.consumer.group.name", .string(group))
        body("worker.consumer", .string(consumer))
        body("messaging.message.id", .string(messageID))
        body("worker.delivery_count", .int64(Int64(deliveryCount)))
        body("worker.outcome", .string(outcome))
        if let error { body("worker.error", .string(error)) }
    }
}

/// A tracer that records a worker's handlings itself, with their attributes as one typed value
/// (``EventHandlingRecord``) instead of `SpanAttributes`.
///
/// Why: with every span exported, the generic path (a `Span` existential, a wrapper object that
/// ends it once, the attributes built as a dictionary at the start, the outcome merged in at the
/// end, the dictionary walked again to encode it) cost 28 % of a worker's CPU in the idempotent
/// drain (perf of the probe, `bench worker --tracing on`, 2026-12-02), more than the export. A
/// tracer of one's own (the shop's `RecordingTracer`) adopts this; any other tracer works as it
/// is, through the generic path.
public protocol EventHandlingTracer: Tracer {
    /// Starts the consumer span `operationName` of one handling, the child of `context`'s span
    /// (or a new trace's root). Returns the span's context, which the handler runs in, and the
    /// span when it records (nil: sampled out, nothing to end).
    func startHandlingSpan(
        _ operationName: String, context: ServiceContext, record: @autoclosure () -> EventHandlingRecord
    ) -> (context: ServiceContext, span: (any EventHandlingSpan)?)
}

/// The recording span of one handling, ended once with its outcome.
///
/// It is held with its entry from the handler call to the settle, which may run in another task
/// and batch. A span that no path ended (the entry was let go) must end itself with the outcome
/// ``EventHandlingRecord/abandoned`` when its last reference goes (its `deinit`), so that a
/// tracer never keeps an open span for ever.
public protocol EventHandlingSpan: AnyObject, Sendable {
    /// Ends the span with `outcome` and `error` in its record, and an error status when
    /// `failed`. Ending an ended span does nothing.
    func end(outcome: String, error: String?, failed: Bool)
}

extension EventHandlingSpan {
    func end(_ outcome: EventOutcome, error: String? = nil) {
        // A retried handling failed, but its entry is not lost: the span is not an error.
        end(outcome: outcome.rawValue, error: error, failed: error != nil && outcome != .retried)
    }
}
