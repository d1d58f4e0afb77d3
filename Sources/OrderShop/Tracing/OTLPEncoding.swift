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
        let scope = OTLPProtoWriter(capacity: spans.count * 512)
        scope.message(1) { $0.string(1, header.scope) }
        let span = OTLPProtoWriter(capacity: 1024)
        for s in spans {
            span.removeAll()
            span.span(s)
            scope.embed(2, span.written)
        }
        let resource = OTLPProtoWriter(capacity: scope.count + 256)
        resource.message(1) { r in
            for (key, value) in header.resource { r.keyValue(1, key, .string(value)) }
        }
        resource.embed(2, scope.written)
        let request = OTLPProtoWriter(capacity: resource.count + 16)
        request.embed(1, resource.written)
        return request.bytes
    }

    static func json(_ spans: some Collection<FinishedSpan>, header: Header) -> [UInt8] {
        var j = OTLPJSONWriter()
        j.raw("{\"resourceSpans\":[{\"resource\":{\"attributes\":[")
        for (i, (key, value)) in header.resource.enumerated() {
            if i > 0 { j.raw(",") }
            j.keyValue(key, .string(value))
        }
        j.raw("]},\"scopeSpans\":[{\"scope\":{\"name\":")
        j.string(header.scope)
        j.raw("},\"spans\":[")
        for (i, s) in spans.enumerated() {
            if i > 0 { j.raw(",") }
            j.span(s)
        }
        j.raw("]}]}]}")
        return j.bytes
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

/// Protobuf's wire format: varints, fixed64, length-delimited fields, stored into a buffer of
/// its own without a check per byte (each write makes room once): the exporter encodes every
/// recorded span, and `[UInt8].append` byte by byte cost 8.8 % of a worker's CPU in the
/// tracing-on drain (perf, 2026-12-02).
final class OTLPProtoWriter {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 256) {
        self.capacity = max(capacity, 16)
        base = .allocate(byteCount: self.capacity, alignment: 1)
    }

    deinit { base.deallocate() }

    var bytes: [UInt8] { [UInt8](UnsafeRawBufferPointer(start: base, count: count)) }
    var written: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    func removeAll() { count = 0 }

    @inline(__always) private func reserve(_ n: Int) {
        guard count + n > capacity else { return }
        let grown = max(capacity * 2, count + n)
        let new = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 1)
        new.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = new
        capacity = grown
    }

    @inline(__always) private func put(_ byte: UInt8) {
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    func varint(_ value: UInt64) {
        reserve(10)
        var v = value
        while v >= 0x80 {
            put(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        put(UInt8(v))
    }

    func tag(_ field: UInt64, _ wireType: UInt64) { varint(field << 3 | wireType) }

    func uint(_ field: UInt64, _ value: UInt64) {
        tag(field, 0)
        varint(value)
    }

    func fixed64(_ field: UInt64, _ value: UInt64) {
        tag(field, 1)
        reserve(8)
        base.storeBytes(of: value.littleEndian, toByteOffset: count, as: UInt64.self)
        count += 8
    }

    func fixed32(_ field: UInt64, _ value: UInt32) {
        tag(field, 5)
        reserve(4)
        base.storeBytes(of: value.littleEndian, toByteOffset: count, as: UInt32.self)
        count += 4
    }

    func string(_ field: UInt64, _ value: String) {
        var value = value
        value.withUTF8 { embed(field, UnsafeRawBufferPointer($0)) }
    }

    func embed(_ field: UInt64, _ value: UnsafeRawBufferPointer) {
        tag(field, 2)
        varint(UInt64(value.count))
        reserve(value.count)
        if let source = value.baseAddress { (base + count).copyMemory(from: source, byteCount: value.count) }
        count += value.count
    }

    /// A nested message, written apart to learn its length first.
    func message(_ field: UInt64, _ body: (OTLPProtoWriter) -> Void) {
        let nested = OTLPProtoWriter()
        body(nested)
        embed(field, nested.written)
    }

    /// 16 or 8 id bytes, big-endian as in the W3C context.
    func id(_ field: UInt64, _ high: UInt64?, _ low: UInt64) {
        tag(field, 2)
        reserve(17)
        put(high == nil ? 8 : 16)
        if let high {
            base.storeBytes(of: high.bigEndian, toByteOffset: count, as: UInt64.self)
            count += 8
        }
        base.storeBytes(of: low.bigEndian, toByteOffset: count, as: UInt64.self)
        count += 8
    }

    func value(_ field: UInt64, _ value: OTLPEncoding.Value) {
        // AnyValue: string_value 1, bool_value 2, int_value 3, double_value 4, array_value 5
        // (ArrayValue: values 1).
        message(field) { v in
            switch value {
            case .string(let s): v.string(1, s)
            case .bool(let b): v.uint(2, b ? 1 : 0)
            case .int(let i): v.uint(3, UInt64(bitPattern: i))
            case .double(let d): v.fixed64(4, d.bitPattern)
            case .array(let values): v.message(5) { a in for element in values { a.value(1, element) } }
            }
        }
    }

    /// KeyValue: key 1, value 2. A scalar is written in place, its lengths computed (a span's
    /// attributes are most of its bytes); an array is written apart.
    func keyValue(_ field: UInt64, _ key: String, _ value: OTLPEncoding.Value) {
        let scalar: Int
        switch value {
        case .string(let s): scalar = Self.lengthDelimitedSize(s.utf8.count)
        case .bool: scalar = 2
        case .int(let i): scalar = 1 + Self.varintSize(UInt64(bitPattern: i))
        case .double: scalar = 9
        case .array:
            message(field) { kv in
                kv.string(1, key)
                kv.value(2, value)
            }
            return
        }
        tag(field, 2)
        varint(UInt64(Self.lengthDelimitedSize(key.utf8.count) + Self.lengthDelimitedSize(scalar)))
        string(1, key)
        tag(2, 2)
        varint(UInt64(scalar))
        switch value {
        case .string(let s): string(1, s)
        case .bool(let b): uint(2, b ? 1 : 0)
        case .int(let i): uint(3, UInt64(bitPattern: i))
        case .double(let d): fixed64(4, d.bitPattern)
        case .array: break
        }
    }

    /// Bytes of a length-delimited field with a one-byte tag and `length` bytes of content.
    static func lengthDelimitedSize(_ length: Int) -> Int { 1 + varintSize(UInt64(length)) + length }

    static func varintSize(_ value: UInt64) -> Int { value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7 }

    func attributes(_ field: UInt64, _ attributes: SpanAttributes) {
        attributes.forEach { key, value in keyValue(field, key, OTLPEncoding.Value(value)) }
    }

    /// Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
    /// start_time_unix_nano 7, end_time_unix_nano 8, attributes 9, events 11, links 13,
    /// status 15, flags 16.
    func span(_ s: FinishedSpan) {
        id(1, s.trace.traceHigh, s.trace.traceLow)
        id(2, nil, s.trace.spanID)
        if let state = s.trace.state { string(3, state) }
        if s.parentSpanID != 0 { id(4, nil, s.parentSpanID) }
        string(5, s.name)
        uint(6, OTLPEncoding.kind(s.kind))
        fixed64(7, s.startNanoseconds)
        fixed64(8, s.endNanoseconds)
        attributes(9, s.attributes)
        for event in s.events {
            // Event: time_unix_nano 1, name 2, attributes 3.
            message(11) { e in
                e.fixed64(1, event.nanosecondsSinceEpoch)
                e.string(2, event.name)
                e.attributes(3, event.attributes)
            }
        }
        for link in s.links {
            guard let trace = link.context.w3cTrace else { continue }
            // Link: trace_id 1, span_id 2, trace_state 3, attributes 4.
            message(13) { l in
                l.id(1, trace.traceHigh, trace.traceLow)
                l.id(2, nil, trace.spanID)
                if let state = trace.state { l.string(3, state) }
                l.attributes(4, link.attributes)
            }
        }
        if let status = s.status {
            // Status: message 2, code 3.
            message(15) { st in
                if let text = status.message { st.string(2, text) }
                st.uint(3, OTLPEncoding.code(status))
            }
        }
        // The W3C flags, and bit 8: whether the parent's is known to be remote (not said here).
        fixed32(16, UInt32(s.trace.flags))
    }
}

/// OTLP's JSON mapping: ids as hex, 64-bit integers as strings, enums as numbers, camelCase.
struct OTLPJSONWriter {
    var bytes: [UInt8] = []

    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case 0..<0x20:
                raw("\\u00")
                bytes.append(Self.hexDigits[Int(byte >> 4)])
                bytes.append(Self.hexDigits[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    mutating func number(_ value: some BinaryInteger) {
        bytes.append(contentsOf: String(value).utf8)
    }

    mutating func quotedNumber(_ value: some BinaryInteger) {
        bytes.append(UInt8(ascii: "\""))
        number(value)
        bytes.append(UInt8(ascii: "\""))
    }

    mutating func hex(_ high: UInt64?, _ low: UInt64) {
        bytes.append(UInt8(ascii: "\""))
        if let high { bytes.append(contentsOf: TraceIDs.hex(high).utf8) }
        bytes.append(contentsOf: TraceIDs.hex(low).utf8)
        bytes.append(UInt8(ascii: "\""))
    }

    mutating func value(_ value: OTLPEncoding.Value) {
        switch value {
        case .string(let s):
            raw("{\"stringValue\":")
            string(s)
        case .bool(let b): raw(b ? "{\"boolValue\":true" : "{\"boolValue\":false")
        case .int(let i):
            raw("{\"intValue\":")
            quotedNumber(i)
        case .double(let d):
            raw("{\"doubleValue\":")
            // JSON has no NaN or infinities; protobuf's JSON mapping writes them as strings.
            if d.isFinite { bytes.append(contentsOf: "\(d)".utf8) } else { string(d.isNaN ? "NaN" : d < 0 ? "-Infinity" : "Infinity") }
        case .array(let values):
            raw("{\"arrayValue\":{\"values\":[")
            for (i, element) in values.enumerated() {
                if i > 0 { raw(",") }
                self.value(element)
            }
            raw("]}")
        }
        raw("}")
    }

    mutating func keyValue(_ key: String, _ value: OTLPEncoding.Value) {
        raw("{\"key\":")
        string(key)
        raw(",\"value\":")
        self.value(value)
        raw("}")
    }

    mutating func attributes(_ attributes: SpanAttributes) {
        raw("[")
        var first = true
        attributes.forEach { key, value in
            if !first { raw(",") }
            first = false
            keyValue(key, OTLPEncoding.Value(value))
        }
        raw("]")
    }

    mutating func span(_ s: FinishedSpan) {
        raw("{\"traceId\":")
        hex(s.trace.traceHigh, s.trace.traceLow)
        raw(",\"spanId\":")
        hex(nil, s.trace.spanID)
        if let state = s.trace.state {
            raw(",\"traceState\":")
            string(state)
        }
        if s.parentSpanID != 0 {
            raw(",\"parentSpanId\":")
            hex(nil, s.parentSpanID)
        }
        raw(",\"flags\":")
        number(s.trace.flags)
        raw(",\"name\":")
        string(s.name)
        raw(",\"kind\":")
        number(OTLPEncoding.kind(s.kind))
        raw(",\"startTimeUnixNano\":")
        quotedNumber(s.startNanoseconds)
        raw(",\"endTimeUnixNano\":")
        quotedNumber(s.endNanoseconds)
        raw(",\"attributes\":")
        attributes(s.attributes)
        if !s.events.isEmpty {
            raw(",\"events\":[")
            for (i, event) in s.events.enumerated() {
                if i > 0 { raw(",") }
                raw("{\"timeUnixNano\":")
                quotedNumber(event.nanosecondsSinceEpoch)
                raw(",\"name\":")
                string(event.name)
                raw(",\"attributes\":")
                attributes(event.attributes)
                raw("}")
            }
            raw("]")
        }
        let links = s.links.compactMap { link in link.context.w3cTrace.map { (trace: $0, attributes: link.attributes) } }
        if !links.isEmpty {
            raw(",\"links\":[")
            for (i, link) in links.enumerated() {
                if i > 0 { raw(",") }
                raw("{\"traceId\":")
                hex(link.trace.traceHigh, link.trace.traceLow)
                raw(",\"spanId\":")
                hex(nil, link.trace.spanID)
                raw(",\"attributes\":")
                attributes(link.attributes)
                raw("}")
            }
            raw("]")
        }
        if let status = s.status {
            raw(",\"status\":{\"code\":")
            number(OTLPEncoding.code(status))
            if let text = status.message {
                raw(",\"message\":")
                string(text)
            }
            raw("}")
        }
        raw("}")
    }
}
