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

/// The span of one handling of an entry, ended once with its outcome. Held by the
/// ``WorkItem`` from the handler call to the settle, which may happen in another task and
/// another batch; a span that no path ended (the entry was let go) ends as abandoned when the
/// last reference goes, so the tracer never keeps it for ever.
final class EventSpan: Sendable {
    /// The span, with the attributes known at its start: they are given to it with the outcome
    /// at the end, so that the span's attributes are set once (each `span.attributes[...] = `
    /// copies them all).
    private let held: Mutex<(span: any Span, attributes: SpanAttributes)?>

    init(_ span: any Span, attributes: SpanAttributes) {
        self.held = Mutex((span, attributes))
    }

    func end(_ outcome: EventOutcome, error: String? = nil) {
        guard case (let span, var attributes)? = held.withLock({ held in
            defer { held = nil }
            return held
        }) else { return }
        attributes.set("worker.outcome", value: .string(outcome.rawValue))
        if let error {
            attributes.set("worker.error", value: .string(error))
            if outcome != .retried { span.setStatus(SpanStatus(code: .error)) }
        }
        span.updateAttributes { current in
            if current.isEmpty { current = attributes } else { current.merge(attributes) }
        }
        span.end()
    }

    deinit {
        end(.abandoned)
    }
}

/// Starts the span of each handling: a consumer span named after the stream, the child of the
/// trace context in the entry's fields (``EventTraceFields``) when there is a valid one, else
/// the root of a new trace (an entry written by another publisher, or before tracing).
struct EventTracer: Sendable {
    /// Resolved once per subscription run (a task-local tracer of `withTracer` included).
    let tracer: any Tracer
    /// `process <stream>`, made once rather than per entry.
    let operationName: String

    init(stream: String, tracer: any Tracer = InstrumentationSystem.tracer) {
        self.tracer = tracer
        self.operationName = "process \(stream)"
    }

    /// The span of handling `item` now. A span that does not record (export off: the shop's
    /// sampler drops root spans) is not wrapped: the handler still gets its context (the trace
    /// id for logs and for what it calls), and nothing is allocated to end it later.
    func start(_ item: WorkItem, context: SubscriptionContext) -> (span: any Span, ending: EventSpan?) {
        var parent = ServiceContext.topLevel
        let carrier = TraceCarrier(item.entry.fields)
        if !carrier.isEmpty {
            // A malformed traceparent leaves `parent` without a span context: a new trace.
            tracer.extract(carrier, into: &parent, using: TraceCarrierExtractor())
        }
        let span = tracer.startSpan(operationName, context: parent, ofKind: .consumer)
        guard span.isRecording else { return (span, nil) }
        var attributes = SpanAttributes()
        // These six, the outcome and maybe an error.
        attributes.reserveCapacity(8)
        // `set` with the attribute itself: the subscript boxes each value in an existential
        // (`SpanAttributeConvertible`) first.
        attributes.set("messaging.system", value: .string("redis"))
        attributes.set("messaging.destination.name", value: .string(context.identityStream))
        attributes.set("messaging.consumer.group.name", value: .string(context.group))
        attributes.set("messaging.message.id", value: .string(context.identityID(of: item.entry)))
        attributes.set("worker.consumer", value: .string(context.consumer))
        attributes.set("worker.delivery_count", value: .int64(Int64(item.deliveryCount)))
        return (span, EventSpan(span, attributes: attributes))
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
