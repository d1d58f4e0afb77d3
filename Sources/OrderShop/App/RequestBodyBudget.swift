import Hummingbird
import Synchronization

/// How many bytes of request bodies one process holds at once: a request with a body reserves
/// its `Content-Length` (a chunked one: the largest body, ``maxBodySize``) for its whole
/// handling, and one that would pass the limit is answered 503 (`Retry-After: 1`) before its
/// body is read.
///
/// Why: every server accepts bodies of up to 4 MiB and holds about a thousand connections, and
/// a body is held two or three times over while it is read, copied and parsed. 64 concurrent
/// `POST /customers` of 4 MiB took a gateway from 41 to 358 MB of RSS (258 MB after), past the
/// 256 MiB limit of deploy/k8s, so a few dozen requests could have OOM-killed every gateway pod
/// (a review of deploy/). Requests of ordinary size (hundreds of bytes) never meet the limit.
final class RequestBodyBudget: Sendable {
    /// Bytes of request bodies held at once by this process's servers: eight of the largest
    /// bodies, any number of ordinary ones.
    static let process = RequestBodyBudget(limit: 8 * maxBodySize)

    let limit: Int
    private let held = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Bytes held now.
    var inUse: Int { held.load(ordering: .relaxed) }

    /// Takes `bytes` when they fit under the limit; false, taking nothing, when they do not.
    func reserve(_ bytes: Int) -> Bool {
        var current = held.load(ordering: .relaxed)
        while current + bytes <= limit {
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + bytes, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func release(_ bytes: Int) { held.subtract(bytes, ordering: .releasing) }

    /// What a request reserves: its declared length (at most ``maxBodySize``: a longer one is
    /// refused 413 as soon as its body is asked for), ``maxBodySize`` for a chunked body, 0
    /// without a body.
    static func claim(of request: Request) -> Int {
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }) { return min(max(declared, 0), maxBodySize) }
        return request.headers[.transferEncoding] == nil ? 0 : maxBodySize
    }

    /// Reserves each request's body for its handling (``RequestBodyBudget``); calls from
    /// another service of the process are not counted again.
    struct Middleware: RouterMiddleware {
        typealias Context = ShopRequestContext
        let budget: RequestBodyBudget

        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            let bytes = context.isInProcess ? 0 : RequestBodyBudget.claim(of: request)
            guard bytes > 0 else { return try await next(request, context) }
            guard budget.reserve(bytes) else {
                throw ShopError(
                    status: 503,
                    message: "the server holds \(budget.inUse >> 20) MiB of request bodies, its limit (\(budget.limit >> 20) MiB); this request's \(bytes) bytes were not read: nothing done, retry",
                    field: "body", outcome: "not applied")
            }
            defer { budget.release(bytes) }
            return try await next(request, context)
        }
    }
}
