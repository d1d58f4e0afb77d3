import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RedisClient
import WorkerMetricsHTTP

/// The request context every OrderShop router uses: Hummingbird's basic one, which can also be
/// made without a connection, for a call in the same process (``InProcessServices``).
public struct ShopRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// A call from another service of this process (``InProcessServices``), whose body the
    /// caller already holds (and counted: ``RequestBodyBudget``).
    let isInProcess: Bool

    public init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        isInProcess = false
    }

    init(inProcess logger: Logger) {
        coreContext = CoreRequestContextStorage(source: InProcessSource(logger: logger))
        isInProcess = true
    }

    private struct InProcessSource: RequestContextSource {
        let logger: Logger
    }
}

/// The largest request body a command accepts (the servers send no `100 Continue` for a larger one).
let maxBodySize = HTTPServerLimits.defaultMaximumBodyBytes

extension HTTPField.Name {
    /// Carries one trace id from the gateway through the owning service into the event's `trace_id`.
    public static let traceID = Self("X-Trace-ID")!
    /// The key under which msg sends a mail at most once, and a create makes its entities once.
    public static let idempotencyKey = Self("Idempotency-Key")!
    /// On a create's answer: `true` when the ids are those of an earlier request with the same
    /// `Idempotency-Key` (nothing was created now).
    public static let idempotentReplayed = Self("Idempotent-Replayed")!
    /// The W3C trace context (``OutgoingTrace``), for a call made without HTTP headers of NIO's.
    static let traceparent = Self("traceparent")!
    static let tracestate = Self("tracestate")!
}

/// JSON responses built from bytes we already have (read-model JSON is never decoded and re-encoded).
enum JSONResponse {
    static func bytes(_ body: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func encode(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        bytes(JSONCoding.encode(value), status: status)
    }

    /// An array of strings (a create's ids), written without Foundation's encoder: every create
    /// answers one, and the encoder was ~1 % of `ordershop up`'s CPU under `POST /customers` load.
    static func strings(_ items: [String]) -> Response {
        bytes(JSONWriter.value(.array(items.map { .string($0) })))
    }

    static let null = bytes(Array("null".utf8))
    static let `true` = bytes(Array("true".utf8))
}

extension Request {
    /// The whole body, at most ``maxBodySize`` bytes (413 beyond, at once when its
    /// `Content-Length` says so); a body that cannot be read (a malformed chunk) is a 400.
    ///
    /// Why at once: a request declaring 99,999,999 bytes and sending two waited for the rest
    /// until the slow-client guard closed it 30 s later, without an answer; and a malformed
    /// chunk size was answered 413 "exceeds" (both found by a user-style test).
    func bodyBytes() async throws -> [UInt8] {
        if let declared = headers[.contentLength].flatMap({ Int($0) }), declared > maxBodySize {
            throw ShopError(status: 413, message: "the request body exceeds \(maxBodySize) bytes (Content-Length \(declared))", field: "body")
        }
        // Each part counted as it arrives against the process's budget (``RequestBodyBudget``).
        let account = RequestBodyBudget.account
        do {
            var buffer = ByteBuffer()
            for try await part in body {
                guard buffer.readableBytes + part.readableBytes <= maxBodySize else {
                    throw ShopError(status: 413, message: "the request body exceeds \(maxBodySize) bytes", field: "body")
                }
                if let account, !account.take(part.readableBytes) { throw account.refusal() }
                buffer.writeImmutableBuffer(part)
            }
            return Array(buffer.readableBytesView)
        } catch let error as HTTPError {
            throw error
        } catch let error as ShopError {
            throw error
        } catch {
            throw ShopError.badRequest("the request body could not be read: \(error)", field: "body")
        }
    }

    /// The body parsed as JSON (400 when it is not).
    func json() async throws -> JSONValue {
        try JSONValue.parse(try await bodyBytes())
    }

    /// The caller's trace id, or a new one.
    var traceID: String {
        headers[.traceID].flatMap { $0.isEmpty || $0.count > 128 ? nil : $0 } ?? RandomUUID.string()
    }
}

/// A service's router before its routes: every request in a span of its own (the child of the
/// caller's `traceparent`, if any; its logs carry the trace id), every error as JSON, and HEAD
/// answered wherever GET is (HTTP requires it of every server; `curl -I .../healthz` was 404).
func makeServiceRouter(_ service: ServiceName) -> Router<ShopRequestContext> {
    let router = Router(context: ShopRequestContext.self, options: .autoGenerateHeadEndpoints)
    router.add(middleware: RequestTracingMiddleware(service: service.rawValue))
    router.add(middleware: HeadResponseMiddleware())
    router.add(middleware: JSONErrorMiddleware())
    router.add(middleware: RequestBodyBudget.Middleware(budget: .process))
    return router
}

/// A HEAD request's answer without its body, errors included: the router's generated HEAD
/// routes drop the body of what GET answers, but an error becomes a JSON answer outside them
/// (``JSONErrorMiddleware``), and a body after a HEAD answer would be read by the client as the
/// start of the next response. Inside the tracing middleware, whose span ends with the body.
struct HeadResponseMiddleware: RouterMiddleware {
    typealias Context = ShopRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = try await next(request, context)
        return request.method == .head ? response.createHeadResponse() : response
    }
}

/// Turns every error a route throws into a JSON answer (`{"error": ..., "field": ...}`), never an
/// HTML page and never a dropped connection, and logs the unexpected ones.
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = ShopRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let message = error.body ?? error.status.reasonPhrase
            let status = error.status
            return JSONResponse.bytes(ShopError(status: status.code, message: message.lowercased() == "not found" ? "no route \(request.method) \(request.uri.path)" : message).body, status: status)
        } catch {
            let shop = ShopError.from(error)
            let path = LogText.escaped(request.uri.path)
            // The client's words leave out what only an operator needs (which node, OpenSSL's
            // reason); the log line has them.
            let cause = (error as? RedisError).map { " (\(LogText.escaped($0.message, limit: 500)))" } ?? ""
            if shop.status == 503 {
                context.logger.warning("\(request.method) \(path): \(LogText.escaped(shop.message, limit: 500))\(cause)")
            } else if shop.status >= 500 {
                context.logger.error("\(request.method) \(path) failed: \(LogText.escaped(shop.message, limit: 500))\(cause)")
            }
            var response = JSONResponse.bytes(shop.body, status: HTTPResponse.Status(code: shop.status))
            if shop.status == 503 { response.headers[.retryAfter] = Self.retryAfter }
            // RFC 9110 12.5.3: a 415 for a content coding says which ones are taken.
            if shop.status == 415 && shop.field == "Content-Encoding" { response.headers[.acceptEncoding] = "identity" }
            return response
        }
    }

    /// The `Retry-After` of every 503 (seconds): each says something is away for a moment (Redis
    /// restarting or failing over, an owner restarting, replicas late), and HTTP clients that
    /// retry (urllib3's `Retry`, OkHttp, Polly) wait what it says instead of their own
    /// guess or none. One second: a failover here was followed within 1-6 s.
    static let retryAfter = "1"
}
