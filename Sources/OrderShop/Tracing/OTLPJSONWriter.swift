import StreamWorker
import Tracing

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

    mutating func attributes(_ attributes: SpanAttributes, handling: EventHandlingRecord? = nil) {
        raw("[")
        var first = true
        func add(_ key: String, _ value: SpanAttribute) {
            if !first { raw(",") }
            first = false
            keyValue(key, OTLPEncoding.Value(value))
        }
        attributes.forEach(add)
        handling?.forEachAttribute(add)
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
        attributes(s.attributes, handling: s.handling)
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
