import HTTPTypes

/// The `Idempotency-Key` of a request, read from its bytes.
///
/// Bytes that are not UTF-8 are U+FFFD by the time a handler sees them (the HTTP parser's
/// headers are Strings), so the keys `\xff\xfe` and `\xfe\xff` both read as
/// "\u{FFFD}\u{FFFD}": the second request was answered the first one's ids
/// (`Idempotent-Replayed: true`) and its own entity never made (found by a user-style test
/// sending raw bytes, 2026-12-05). A key holding U+FFFD is refused instead: it cannot be told
/// from another (a client that means U+FFFD itself has no reason to).
enum IdempotencyKeyHeader {
    /// The key, nil without the header; a 400 naming `Idempotency-Key` for one that is not UTF-8
    /// text or is given more than once (two keys cannot both name the request).
    static func value(in headers: HTTPFields) throws(ShopError) -> String? {
        let fields = headers[fields: .idempotencyKey]
        guard let field = fields.first else { return nil }
        guard fields.count == 1 else { throw ShopError.badRequest("the Idempotency-Key header is given \(fields.count) times; give one", field: "Idempotency-Key") }
        guard let key = field.withUnsafeBytesOfValue({ String(validating: $0, as: UTF8.self) }), !key.unicodeScalars.contains("\u{FFFD}") else {
            throw ShopError.badRequest("the Idempotency-Key header is not UTF-8 text (its bytes read as U+FFFD)", field: "Idempotency-Key")
        }
        return key
    }
}
