import RedisClient
import Synchronization
import Tracing

/// The names of the entry fields that carry a W3C trace context: a publisher that writes them
/// (the shop's event store does) has the worker's span continue its trace.
public enum EventTraceFields {
    public static let traceparent = "traceparent"
    public static let tracestate = "tracestate"
}

/// What became of one handling of one entry: the `worker.outcome` attribute of its span.
enum EventOutcome: String, Sendable {
    /// Acked with its effects (and its marker, in idempotent mode).
    case applied
    /// Acked without applying anything: its marker existed (applied before).
    case duplicate
    /// The handler failed; the entry is delivered again later.
    case retried
    /// Moved to the group's dead letters.
    case deadLettered = "dead-lettered"
    /// Deleted from the stream while pending.
    case lost
    /// Another consumer owned it by the time of the settle: nothing applied here.
    case foreign
    /// Left pending for another worker (a drain, a cancellation, a settle given up).
    case abandoned
}

/// The handling span of a tracer that does not adopt ``EventHandlingTracer``: its `Span`, ended
/// once, with the record given as `SpanAttributes` at the end (set once: each
/// `span.attributes[...] = ` copies them all).
final class GenericEventSpan: EventHandlingSpan {
    private let held: Mutex<(span: any Span, record: EventHandlingRecord)?>

    init(_ span: any Span, record: EventHandlingRecord) {
        self.held = Mutex((span, record))
    }

    func end(outcome: String, error: String?, failed: Bool) {
        guard case (let span, var record)? = held.withLock({ held in
            defer { held = nil }
            return held
        }) else { return }
        record.outcome = outcome
        record.error = error
        if failed { span.setStatus(SpanStatus(code: .error)) }
        span.updateAttributes { current in
            current.reserveCapacity(current.count + 8)
            // `set` with the attribute itself: the subscript boxes each value in an
            // existential (`SpanAttributeConvertible`) first.
            record.forEachAttribute { name, value in current.set(name, value: value) }
        }
        span.end()
    }

    deinit {
        end(outcome: EventHandlingRecord.abandoned, error: nil, failed: false)
    }
}

/// Starts the span of each handling: a consumer span named after the stream, the child of the
/// trace context in the entry's fields (``EventTraceFields``) when there is a valid one, else
/// the root of a new trace (an entry written by another publisher, or before tracing).
struct EventTracer: Sendable {
    /// Resolved once per subscription run (a task-local tracer of `withTracer` included).
    let tracer: any Tracer
    /// The same tracer when it records handlings itself (looked up once, not per entry).
    let handlingTracer: (any EventHandlingTracer)?
    /// `process <stream>`, made once rather than per entry.
    let operationName: String

    init(stream: String, tracer: any Tracer = InstrumentationSystem.tracer) {
        self.tracer = tracer
        self.handlingTracer = tracer as? any EventHandlingTracer
        self.operationName = "process \(stream)"
    }

    /// The context to handle `item` in, and its span when it records. A span that does not
    /// record (export off: the shop's sampler drops root spans) is not kept: the handler still
    /// gets its context (the trace id for logs and for what it calls), and nothing is allocated
    /// to end it later.
    func start(_ item: WorkItem, context: SubscriptionContext) -> (context: ServiceContext, span: (any EventHandlingSpan)?) {
        var parent = ServiceContext.topLevel
        let carrier = TraceCarrier(item.entry.fields)
        if !carrier.isEmpty {
            // A malformed traceparent leaves `parent` without a span context: a new trace.
            tracer.extract(carrier, into: &parent, using: TraceCarrierExtractor())
        }
        if let handlingTracer {
            return handlingTracer.startHandlingSpan(operationName, context: parent, record: Self.record(item, context: context))
        }
        let span = tracer.startSpan(operationName, context: parent, ofKind: .consumer)
        guard span.isRecording else { return (span.context, nil) }
        return (span.context, GenericEventSpan(span, record: Self.record(item, context: context)))
    }

    private static func record(_ item: WorkItem, context: SubscriptionContext) -> EventHandlingRecord {
        EventHandlingRecord(
            stream: context.identityStream, group: context.group, consumer: context.consumer, messageID: context.identityID(of: item.entry),
            deliveryCount: item.deliveryCount, outcome: EventHandlingRecord.abandoned)
    }
}

/// The trace fields of an entry, found in one pass over its fields.
struct TraceCarrier: Sendable, CustomStringConvertible {
    var traceparent: String?
    var tracestate: String?

    init(_ fields: [StreamField]) {
        for field in fields {
            if field.name == EventTraceFields.traceparent {
                traceparent = String(decoding: field.value, as: UTF8.self)
            } else if field.name == EventTraceFields.tracestate {
                tracestate = String(decoding: field.value, as: UTF8.self)
            }
        }
    }

    var isEmpty: Bool { traceparent == nil }

    // What a tracer logs when it cannot parse the context: these two values, not the entity.
    var description: String { "traceparent=\(traceparent ?? "") tracestate=\(tracestate ?? "")" }
}

struct TraceCarrierExtractor: Extractor {
    func extract(key: String, from carrier: TraceCarrier) -> String? {
        switch key {
        case EventTraceFields.traceparent: carrier.traceparent
        case EventTraceFields.tracestate: carrier.tracestate
        default: nil
        }
    }
}
