import StreamWorker
import Tracing

/// The spans of one export request, encoded one by one into the list the request wraps
/// (``OTLPEncoding/wrapping(listLength:header:json:)``): the spans' bytes are copied once more, into the
/// request, and no per-span message is kept.
struct EncodedSpans {
    let json: Bool
    /// The protobuf list: one `spans` field (2 of ScopeSpans) per span.
    private let list: OTLPProtoWriter
    /// One span's message, written apart to learn its length.
    private let scratch = OTLPProtoWriter(capacity: 1024)
    private var jsonList: OTLPJSONWriter
    private(set) var count = 0

    init(json: Bool, capacity: Int = 64) {
        self.json = json
        list = OTLPProtoWriter(capacity: json ? 16 : capacity * 320)
        jsonList = OTLPJSONWriter()
        if json { jsonList.bytes.reserveCapacity(capacity * 640) }
    }

    mutating func append(_ span: FinishedSpan) {
        count += 1
        if json {
            if count > 1 { jsonList.raw(",") }
            jsonList.span(span)
        } else {
            scratch.removeAll()
            scratch.span(span)
            list.embed(2, scratch.written)
        }
    }

    mutating func append(_ span: RecordedHandlingSpan) {
        guard !json else { return append(span.finished) }
        count += 1
        scratch.removeAll()
        span.encode(into: scratch)
        list.embed(2, scratch.written)
    }

    /// Empties the list (keeping its storage) without sending it.
    mutating func discard() {
        withList { _ in }
    }

    /// Calls `body` with the spans encoded so far, then empties the list (keeping its storage).
    mutating func withList<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        defer {
            count = 0
            list.removeAll()
            jsonList.bytes.removeAll(keepingCapacity: true)
        }
        return json ? try jsonList.bytes.withUnsafeBytes(body) : try body(list.written)
    }
}
