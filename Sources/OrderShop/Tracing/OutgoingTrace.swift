import HTTPTypes
import NIOHTTP1
import Tracing

/// The W3C trace context of the current span, for what leaves the process: the fields of an
/// event the shop appends, the headers of a request it makes (a forwarded command, a mail). The
/// bootstrapped instrument writes it (``ShopTracing``); without one nothing is written.
enum OutgoingTrace {
    /// `traceparent` and `tracestate` of the current span, "" for each that there is none of.
    static func fields() -> (traceparent: String, tracestate: String) {
        guard let context = ServiceContext.current else { return ("", "") }
        var carrier = FieldsCarrier()
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: FieldsInjector())
        return (carrier.traceparent, carrier.tracestate)
    }

    /// Adds `traceparent` (and `tracestate`) of the current span to a request's headers.
    static func inject(into headers: inout HTTPHeaders) {
        guard let context = ServiceContext.current else { return }
        InstrumentationSystem.instrument.inject(context, into: &headers, using: HeadersInjector())
    }

    /// Adds `traceparent` (and `tracestate`) of the current span to an in-process call's
    /// header fields (``InProcessServices``).
    static func inject(into fields: inout HTTPFields) {
        let trace = Self.fields()
        if !trace.traceparent.isEmpty { fields[.traceparent] = trace.traceparent }
        if !trace.tracestate.isEmpty { fields[.tracestate] = trace.tracestate }
    }

    struct FieldsCarrier {
        var traceparent = ""
        var tracestate = ""
    }

    struct FieldsInjector: Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout FieldsCarrier) {
            switch key {
            case "traceparent": carrier.traceparent = value
            case "tracestate": carrier.tracestate = value
            default: break
            }
        }
    }

    struct HeadersInjector: Injector {
        func inject(_ value: String, forKey key: String, into headers: inout HTTPHeaders) {
            headers.replaceOrAdd(name: key, value: value)
        }
    }
}
