import StreamWorker
import Tracing

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

    /// Bytes already encoded, as they are.
    func raw(_ value: UnsafeRawBufferPointer) {
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

    /// The attributes the handlings of one subscription share (system, stream, group,
    /// consumer), as last written: copied rather than encoded again while they stay the same
    /// (they are the same strings, so comparing them is a pointer comparison). Kept in separate
    /// properties, not an optional tuple: binding the tuple copied it, four retains and four
    /// releases per span (1.6 % of a traced worker's CPU, perf 2026-12-03).
    private var sharedStream = ""
    private var sharedGroup = ""
    private var sharedConsumer = ""
    /// Empty until written once.
    private var sharedBytes: [UInt8] = []

    /// A handling's attributes, from its fields (the names and order of
    /// ``EventHandlingRecord/forEachAttribute(_:)``, which a test compares with these).
    func handling(_ field: UInt64, _ h: EventHandlingRecord) {
        if !sharedBytes.isEmpty, sharedStream == h.stream, sharedGroup == h.group, sharedConsumer == h.consumer {
            sharedBytes.withUnsafeBytes { raw($0) }
        } else {
            let start = count
            keyValue(field, "messaging.system", .string("redis"))
            keyValue(field, "messaging.destination.name", .string(h.stream))
            keyValue(field, "messaging.consumer.group.name", .string(h.group))
            keyValue(field, "worker.consumer", .string(h.consumer))
            (sharedStream, sharedGroup, sharedConsumer) = (h.stream, h.group, h.consumer)
            sharedBytes = Array(UnsafeRawBufferPointer(start: base + start, count: count - start))
        }
        keyValue(field, "messaging.message.id", .string(h.messageID))
        keyValue(field, "worker.delivery_count", .int(Int64(h.deliveryCount)))
        keyValue(field, "worker.outcome", .string(h.outcome))
        if let error = h.error { keyValue(field, "worker.error", .string(error)) }
    }

    /// Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
    /// start_time_unix_nano 7, end_time_unix_nano 8, attributes 9, events 11, links 13,
    /// status 15, flags 16.
    func span(_ s: FinishedSpan) {
        spanHead(trace: s.trace, parentSpanID: s.parentSpanID, name: s.name, kind: s.kind, start: s.startNanoseconds, end: s.endNanoseconds)
        attributes(9, s.attributes)
        if let handling = s.handling { self.handling(9, handling) }
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
        spanTail(status: s.status, flags: s.trace.flags)
    }

    /// A span's fields before its attributes.
    func spanHead(trace: W3CTrace, parentSpanID: UInt64, name: String, kind: SpanKind, start: UInt64, end: UInt64) {
        id(1, trace.traceHigh, trace.traceLow)
        id(2, nil, trace.spanID)
        if let state = trace.state { string(3, state) }
        if parentSpanID != 0 { id(4, nil, parentSpanID) }
        string(5, name)
        uint(6, OTLPEncoding.kind(kind))
        fixed64(7, start)
        fixed64(8, end)
    }

    /// A span's fields after its events and links.
    func spanTail(status: SpanStatus?, flags: UInt8) {
        if let status {
            // Status: message 2, code 3.
            message(15) { st in
                if let text = status.message { st.string(2, text) }
                st.uint(3, OTLPEncoding.code(status))
            }
        }
        // The W3C flags, and bit 8: whether the parent's is known to be remote (not said here).
        fixed32(16, UInt32(flags))
    }
}
