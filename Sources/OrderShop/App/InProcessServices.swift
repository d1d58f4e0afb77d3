import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// The routers of the services this process runs, for callers in the same process
/// (`ordershop up`): the gateway forwards a command to its owner, and a worker hands a mail to
/// msg, by calling the owner's router directly instead of over loopback HTTP.
///
/// Why: in `ordershop up` a `POST /customers` crossed HTTP three times (client to gateway,
/// gateway to the customer service, the CRM worker's mail to msg), and each loopback hop cost
/// the process an HTTP client's and a server's work. The call goes through the same router as
/// the HTTP request would: the same middleware (a span that continues the caller's
/// `traceparent`, errors as JSON), the same headers (`X-Trace-ID`, `Idempotency-Key`), the
/// same answer. What it leaves out is what only a socket has: the server's limits on slow
/// clients and body size are the caller's (the gateway already applied its own), there is no
/// connection that can fail, so an in-process owner is never "unreachable", and the caller's
/// own deadline (the gateway's forward timeout, a mail's 10 s) does not apply: those are for a
/// service in another process that may hang or vanish. In-process, the callee's Redis
/// commands bound the call (their timeouts: 5 s per command by default; a pool hands its
/// connections out in order). A deadline per call cost too much to keep: a task group racing
/// the call against a sleeping child (a timer armed and disarmed on dispatch's manager thread
/// every time) took `POST /customers` from 4,311 and 4,610 req/s to 3,375 and 2,738, and a
/// watcher cancelling a task per call still cost about 7 % (medians of six alternating wrk
/// runs each: 4,128 without, 3,865 with; c=8, 10 s, 2026-12-03).
///
/// Separate processes (`ordershop serve`, deploy/) call each other over HTTP as before; so does
/// `ordershop up --http-between-services`.
public final class InProcessServices: Sendable {
    private let responders = Mutex<[ServiceName: (responder: RouterResponder<ShopRequestContext>, logger: Logger)]>([:])

    public init() {}

    /// Makes `service` callable in-process through `responder`; its requests log to `logger`
    /// (its HTTP server's).
    func register(_ service: ServiceName, _ responder: RouterResponder<ShopRequestContext>, logger: Logger) {
        responders.withLock { $0[service] = (responder, logger) }
    }

    /// Whether `service` runs in this process.
    func runs(_ service: ServiceName) -> Bool { responders.withLock { $0[service] != nil } }

    /// Calls `service`'s router with a request as the HTTP server would have built it; nil when
    /// the service does not run in this process.
    func call(_ service: ServiceName, method: HTTPRequest.Method, path: String, headers: HTTPFields, body: ByteBuffer) async throws -> Response? {
        guard let (responder, serviceLogger) = responders.withLock({ $0[service] }) else { return nil }
        var fields = headers
        fields[.contentLength] = String(body.readableBytes)
        let request = Request(head: HTTPRequest(method: method, scheme: nil, authority: nil, path: path, headerFields: fields), body: RequestBody(buffer: body))
        // As Hummingbird's server does for each request (its logs carry it; `context.id` reads it).
        var logger = serviceLogger
        logger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
        let context = ShopRequestContext(inProcess: logger)
        return try await responder.respond(to: request, context: context)
    }

    /// A response's body as bytes, at most `limit` (more is an error, as for an HTTP answer).
    static func collect(_ body: consuming ResponseBody, upTo limit: Int) async throws -> ByteBuffer {
        let collected = CollectedBody(limit: limit)
        try await body.write(CollectingWriter(into: collected))
        return try collected.result()
    }
}

/// The bytes a ``CollectingWriter`` received.
private final class CollectedBody: Sendable {
    private let state: Mutex<(buffer: ByteBuffer, overflowed: Bool)>
    private let limit: Int

    init(limit: Int) {
        self.limit = limit
        state = Mutex((ByteBuffer(), false))
    }

    func append(_ part: ByteBuffer) {
        state.withLock { s in
            if s.buffer.readableBytes + part.readableBytes > limit {
                s.overflowed = true
            } else {
                s.buffer.writeImmutableBuffer(part)
            }
        }
    }

    func result() throws -> ByteBuffer {
        try state.withLock { s in
            if s.overflowed { throw InProcessBodyTooLarge(limit: limit) }
            return s.buffer
        }
    }
}

struct InProcessBodyTooLarge: Error, CustomStringConvertible {
    let limit: Int
    var description: String { "the in-process answer exceeds \(limit) bytes" }
}

private struct CollectingWriter: ResponseBodyWriter {
    let into: CollectedBody

    mutating func write(_ buffer: ByteBuffer) async throws { into.append(buffer) }
    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
