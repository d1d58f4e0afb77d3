import StreamWorker
import Tracing

/// The spans of one export request, encoded one by one into the list the request wraps
/// (``OTLPEncoding/request(_:header:json:)``): the spans' bytes are copied once more, into the
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

    /// The spans encoded so far; empties the list.
    mutating func take() -> [UInt8] {
        defer {
            count = 0
            list.removeAll()
            jsonList.bytes.removeAll(keepingCapacity: true)
        }
        return json ? jsonList.bytes : list.bytes
    }
}
