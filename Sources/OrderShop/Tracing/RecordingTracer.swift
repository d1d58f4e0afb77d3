import StreamWorker
import Synchronization
import Tracing

/// The tracer of a process that exports (``ShopTracing`` with an OTLP endpoint): the spans of
/// ``PropagatingTracer`` (the same W3C context, ids and log metadata), each sampled one
/// recorded and, when it ends, handed to an ``OTLPSpanExporter``.
///
/// Why not swift-otel's tracer: it cost about 10 µs of the worker's CPU per recorded span
/// (`bench worker --tracing compare`: the idempotent drain fell to 0.39x of tracing off). Per
/// span it allocates a recording span and an end closure, inserts it into a locked
/// dictionary of every open span, yields it to its tracer's AsyncStream at start and again at
/// end (a task wake-up each), then to its batch processor's stream (an actor hop), converts
/// it to SwiftProtobuf's generated messages and serializes those; its ids come from
/// `getrandom`. This one: ids from ``TraceIDs``, the span's state behind one uncontended lock,
/// and at the end one append to the exporter's queue; the exporter writes the wire bytes
/// directly (``OTLPEncoding``) once per batch.
public struct RecordingTracer: EventHandlingTracer {
    public typealias Span = RecordedSpan

    let sampler: TraceSampler
    let exporter: OTLPSpanExporter
    /// Extraction and injection are the propagating tracer's: the same W3C context.
    private let propagation = PropagatingTracer()

    init(sampler: TraceSampler, exporter: OTLPSpanExporter) {
        self.sampler = sampler
        self.exporter = exporter
    }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind, at instant: @autoclosure () -> Instant,
        function: String, file fileID: String, line: UInt
    ) -> RecordedSpan {
        var context = context()
        let (trace, parentSpanID) = child(in: &context)
        // An unsampled span still carries its context (to the events, requests and log lines);
        // it records nothing and never reaches the exporter.
        guard trace.flags & 1 == 1 else { return RecordedSpan(context: context) }
        return RecordedSpan(
            context: context, trace: trace, parentSpanID: parentSpanID, name: operationName, kind: kind, start: instant().nanosecondsSinceEpoch,
            exporter: exporter)
    }

    /// A worker's handling: a span of its own kind (``RecordedHandlingSpan``), lighter than a
    /// ``RecordedSpan`` (no attribute dictionary, events or links; no context kept).
    public func startHandlingSpan(
        _ operationName: String, context: ServiceContext, record: @autoclosure () -> EventHandlingRecord
    ) -> (context: ServiceContext, span: (any EventHandlingSpan)?) {
        var context = context
        let (trace, parentSpanID) = child(in: &context)
        guard trace.flags & 1 == 1 else { return (context, nil) }
        let span = RecordedHandlingSpan(
            trace: trace, parentSpanID: parentSpanID, name: operationName, start: DefaultTracerClock.now.nanosecondsSinceEpoch, record: record(),
            exporter: exporter)
        return (context, span)
    }

    /// The trace context of a new span in `context`'s trace (a new trace without one), put in
    /// `context`, with the parent's span id (0: a root); its sampled flag says whether it records.
    private func child(in context: inout ServiceContext) -> (trace: W3CTrace, parentSpanID: UInt64) {
        let parent = context.w3cTrace
        let traceHigh = parent?.traceHigh ?? TraceIDs.next()
        let traceLow = parent?.traceLow ?? TraceIDs.next()
        let sampled = sampler.samples(parent: parent, traceLow: traceLow)
        let flags = sampled ? (parent?.flags ?? 0) | 1 : (parent?.flags ?? 0) & ~1
        let trace = W3CTrace(traceHigh: traceHigh, traceLow: traceLow, spanID: TraceIDs.next(), flags: flags, state: parent?.state)
        context.w3cTrace = trace
        return (trace, parent?.spanID ?? 0)
    }

    public func forceFlush() {
        exporter.flushSoon()
    }

    public func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        propagation.extract(carrier, into: &context, using: extractor)
    }

    public func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        propagation.inject(context, into: &carrier, using: injector)
    }
}

/// A span of ``RecordingTracer``: recording until it ends when sampled, else only a context.
public final class RecordedSpan: Span {
    public let context: ServiceContext
    private let trace: W3CTrace
    private let parentSpanID: UInt64
    private let kind: SpanKind
    private let start: UInt64
    /// nil: not sampled.
    private let exporter: OTLPSpanExporter?
    private let state: Mutex<State>

    private struct State {
        var name: String
        var ended = false
        var attributes = SpanAttributes()
        var status: SpanStatus?
        var events: [SpanEvent] = []
        var links: [SpanLink] = []
    }

    init(context: ServiceContext) {
        self.context = context
        self.trace = W3CTrace(traceHigh: 0, traceLow: 0, spanID: 0, flags: 0, state: nil)
        self.parentSpanID = 0
        self.kind = .internal
        self.start = 0
        self.exporter = nil
        self.state = Mutex(State(name: "", ended: true))
    }

    init(context: ServiceContext, trace: W3CTrace, parentSpanID: UInt64, name: String, kind: SpanKind, start: UInt64, exporter: OTLPSpanExporter) {
        self.context = context
        self.trace = trace
        self.parentSpanID = parentSpanID
        self.kind = kind
        self.start = start
        self.exporter = exporter
        self.state = Mutex(State(name: name))
    }

    public var isRecording: Bool { state.withLock { !$0.ended } }

    public var operationName: String {
        get { state.withLock { $0.name } }
        set { state.withLock { if !$0.ended { $0.name = newValue } } }
    }

    public var attributes: SpanAttributes {
        get { state.withLock { $0.attributes } }
        set { state.withLock { if !$0.ended { $0.attributes = newValue } } }
    }

    public func setStatus(_ status: SpanStatus) {
        state.withLock { state in
            // An Ok status is final (OpenTelemetry's API); its message is ignored.
            guard !state.ended, state.status?.code != .ok else { return }
            state.status = status.code == .ok ? SpanStatus(code: .ok) : status
        }
    }

    public func addEvent(_ event: SpanEvent) {
        state.withLock { if !$0.ended { $0.events.append(event) } }
    }

    public func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
        guard exporter != nil else { return }
        var eventAttributes: SpanAttributes = [
            "exception.type": .string(String(describing: type(of: error))), "exception.message": .string(String(describing: error)),
        ]
        eventAttributes.merge(attributes)
        addEvent(SpanEvent(name: "exception", at: instant(), attributes: eventAttributes))
    }

    public func addLink(_ link: SpanLink) {
        state.withLock { if !$0.ended { $0.links.append(link) } }
    }

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        guard let exporter else { return }
        let end = instant().nanosecondsSinceEpoch
        let finished: FinishedSpan? = state.withLock { state in
            guard !state.ended else { return nil }
            state.ended = true
            return FinishedSpan(
                trace: trace, parentSpanID: parentSpanID, name: state.name, kind: kind, startNanoseconds: start, endNanoseconds: end,
                attributes: state.attributes, status: state.status, events: state.events, links: state.links)
        }
        if let finished { exporter.add(finished) }
    }
}

/// Which new spans are recorded: `OTEL_TRACES_SAMPLER` (and `_ARG`) as OpenTelemetry defines
/// them, for the samplers that need nothing outside the process.
struct TraceSampler: Sendable, Equatable {
    enum Root: Sendable, Equatable {
        case always
        case never
        /// Sampled when the low 64 bits of the trace id are below this.
        case below(UInt64)
    }

    var root: Root
    /// A child follows its parent's sampled flag; only a root asks `root`.
    var parentBased: Bool

    /// `parentbased_always_on`: OpenTelemetry's default.
    static let `default` = TraceSampler(root: .always, parentBased: true)

    /// Samplers of the specification that need something outside the process: not available.
    static let remote: Set<String> = ["jaeger_remote", "parentbased_jaeger_remote", "xray"]

    /// The sampler `name` (`always_on`, `traceidratio`, `parentbased_always_off`...) with
    /// `argument` (a ratio); nil for one this tracer does not have (`jaeger_remote`, `xray`).
    init?(name: String, argument: String?) {
        var name = name.lowercased()
        parentBased = name.hasPrefix("parentbased_")
        if parentBased { name.removeFirst("parentbased_".count) }
        switch name {
        case "always_on": root = .always
        case "always_off": root = .never
        case "traceidratio":
            let ratio = argument.flatMap { Double($0) } ?? 1
            if ratio >= 1 {
                root = .always
            } else if ratio > 0 {
                root = .below(UInt64(ratio * 0x1p64))
            } else {
                root = .never
            }
        default: return nil
        }
    }

    init(root: Root, parentBased: Bool) {
        self.root = root
        self.parentBased = parentBased
    }

    func samples(parent: W3CTrace?, traceLow: UInt64) -> Bool {
        if parentBased, let parent { return parent.flags & 1 == 1 }
        switch root {
        case .always: return true
        case .never: return false
        case .below(let threshold): return traceLow < threshold
        }
    }
}
