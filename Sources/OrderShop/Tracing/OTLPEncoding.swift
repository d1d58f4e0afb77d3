import StreamWorker
import Tracing

/// A span as it is exported: ids as integers, the rest as the tracing API recorded it.
struct FinishedSpan: Sendable {
    var trace: W3CTrace
    /// 0: a root span.
    var parentSpanID: UInt64
    var name: String
    var kind: SpanKind
    var startNanoseconds: UInt64
    var endNanoseconds: UInt64
    var attributes: SpanAttributes
    /// A worker's handling of an entry (``EventHandlingSpan``): more attributes, kept typed.
    var handling: EventHandlingRecord? = nil
    var status: SpanStatus?
    var events: [SpanEvent]
    var links: [SpanLink]
}

/// `ExportTraceServiceRequest` of OTLP, written by hand in both encodings OTLP/HTTP takes, so
/// that a span costs its bytes and no intermediate message (swift-otel converts each span to
/// SwiftProtobuf's generated types first). Field numbers: opentelemetry-proto v1,
/// collector/trace/v1/trace_service.proto and trace/v1/trace.proto.
enum OTLPEncoding {
    /// The resource and scope every span of a process shares.
    struct Header: Sendable {
        var resource: [(String, String)]
        var scope: String
    }

    static func protobuf(_ spans: some Collection<FinishedSpan>, header: Header) -> [UInt8] {
        encode(spans, header: header, json: false)
    }

    static func json(_ spans: some Collection<FinishedSpan>, header: Header) -> [UInt8] {
        encode(spans, header: header, json: true)
    }

    private static func encode(_ spans: some Collection<FinishedSpan>, header: Header, json: Bool) -> [UInt8] {
        var batch = EncodedSpans(json: json)
        for span in spans { batch.append(span) }
        var request: [UInt8] = []
        batch.withList { list in
            let (head, tail) = wrapping(listLength: list.count, header: header, json: json)
            request = head + Array(list) + tail
        }
        return request
    }

    /// The bytes before and after a list of spans encoded by ``EncodedSpans`` that make it an
    /// `ExportTraceServiceRequest` of one resource and scope: the list itself is copied once,
    /// straight into the request's buffer.
    static func wrapping(listLength: Int, header: Header, json: Bool) -> (head: [UInt8], tail: [UInt8]) {
        guard !json else {
            var j = OTLPJSONWriter()
            j.raw("{\"resourceSpans\":[{\"resource\":{\"attributes\":[")
            for (i, (key, value)) in header.resource.enumerated() {
                if i > 0 { j.raw(",") }
                j.keyValue(key, .string(value))
            }
            j.raw("]},\"scopeSpans\":[{\"scope\":{\"name\":")
            j.string(header.scope)
            j.raw("},\"spans\":[")
            return (j.bytes, Array("]}]}]}".utf8))
        }
        // Nested lengths computed: ExportTraceServiceRequest { resource_spans 1: ResourceSpans
        // { resource 1, scope_spans 2: ScopeSpans { scope 1, spans 2 (the list: already framed
        // as fields) } } }.
        let resource = OTLPProtoWriter()
        resource.message(1) { r in
            for (key, value) in header.resource { r.keyValue(1, key, .string(value)) }
        }
        let scope = OTLPProtoWriter()
        scope.message(1) { $0.string(1, header.scope) }
        let scopeSpans = scope.count + listLength
        let resourceSpans = resource.count + OTLPProtoWriter.lengthDelimitedSize(scopeSpans)
        let head = OTLPProtoWriter(capacity: resource.count + scope.count + 32)
        head.tag(1, 2)
        head.varint(UInt64(resourceSpans))
        head.raw(resource.written)
        head.tag(2, 2)
        head.varint(UInt64(scopeSpans))
        head.raw(scope.written)
        return (head.bytes, [])
    }

    /// OTLP's SpanKind numbers.
    static func kind(_ kind: SpanKind) -> UInt64 {
        switch kind {
        case .internal: 1
        case .server: 2
        case .client: 3
        case .producer: 4
        case .consumer: 5
        }
    }

    /// OTLP's StatusCode numbers (0: unset).
    static func code(_ status: SpanStatus) -> UInt64 {
        switch status.code {
        case .ok: 1
        case .error: 2
        }
    }

    /// The parts of an attribute value OTLP has: scalars, and arrays of them.
    enum Value {
        case string(String), bool(Bool), int(Int64), double(Double), array([Value])

        init(_ attribute: SpanAttribute) {
            switch attribute {
            case .int32(let v): self = .int(Int64(v))
            case .int64(let v): self = .int(v)
            case .double(let v): self = .double(v)
            case .bool(let v): self = .bool(v)
            case .string(let v): self = .string(v)
            case .int32Array(let v): self = .array(v.map { .int(Int64($0)) })
            case .int64Array(let v): self = .array(v.map { .int($0) })
            case .doubleArray(let v): self = .array(v.map { .double($0) })
            case .boolArray(let v): self = .array(v.map { .bool($0) })
            case .stringArray(let v): self = .array(v.map { .string($0) })
            case .stringConvertible(let v): self = .string(v.description)
            case .stringConvertibleArray(let v): self = .array(v.map { .string($0.description) })
            default: self = .string("\(attribute)")
            }
        }
    }
}
