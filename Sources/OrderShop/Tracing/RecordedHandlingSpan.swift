import StreamWorker
import Synchronization
import Tracing

/// The span of a worker's handling of one entry when spans are exported
/// (``RecordingTracer/startHandlingSpan(_:context:record:)``): its ids, start and record; ended,
/// it is queued as it is and encoded by the exporting task.
///
/// Why not a ``RecordedSpan``: a worker ends one per entry (100,000 a second in a drain), and
/// a recorded span carries what a handling never uses (its context, an attribute dictionary,
/// events, links) through an allocation, a lock, a copy into the queue and a release of each.
final class RecordedHandlingSpan: EventHandlingSpan {
    private let trace: W3CTrace
    private let parentSpanID: UInt64
    private let name: String
    private let start: UInt64
    private let exporter: OTLPSpanExporter
    private let state: Mutex<State>

    private struct State {
        var record: EventHandlingRecord
        /// Set once, when it ends.
        var end: UInt64?
        var failed = false
    }

    init(trace: W3CTrace, parentSpanID: UInt64, name: String, start: UInt64, record: EventHandlingRecord, exporter: OTLPSpanExporter) {
        self.trace = trace
        self.parentSpanID = parentSpanID
        self.name = name
        self.start = start
        self.exporter = exporter
        self.state = Mutex(State(record: record))
    }

    func end(outcome: String, error: String?, failed: Bool) {
        let now = DefaultTracerClock.now.nanosecondsSinceEpoch
        let ended = state.withLock { state -> Bool in
            guard state.end == nil else { return false }
            state.end = now
            state.record.outcome = outcome
            state.record.error = error
            state.failed = failed
            return true
        }
        if ended { exporter.add(self) }
    }

    /// The span as exported (once ended).
    var finished: FinishedSpan {
        state.withLock { state in
            FinishedSpan(
                trace: trace, parentSpanID: parentSpanID, name: name, kind: .consumer, startNanoseconds: start, endNanoseconds: state.end ?? start,
                attributes: [:], handling: state.record, status: state.failed ? SpanStatus(code: .error) : nil, events: [], links: [])
        }
    }

    /// Its protobuf `Span` message (once ended), written from its fields: the same bytes as
    /// ``finished``'s, without making it.
    func encode(into writer: OTLPProtoWriter) {
        state.withLock { state in
            writer.spanHead(trace: trace, parentSpanID: parentSpanID, name: name, kind: .consumer, start: start, end: state.end ?? start)
            writer.handling(9, state.record)
            writer.spanTail(status: state.failed ? SpanStatus(code: .error) : nil, flags: trace.flags)
        }
    }

    deinit {
        // A handling no path ended (its entry was let go), as ``EventHandlingSpan`` asks.
        // Never queued (the queue would hold it), so it is encoded here.
        let ended = state.withLock { state -> Bool in
            guard state.end == nil else { return false }
            state.end = DefaultTracerClock.now.nanosecondsSinceEpoch
            state.record.outcome = EventHandlingRecord.abandoned
            return true
        }
        if ended { exporter.add(finished) }
    }
}
