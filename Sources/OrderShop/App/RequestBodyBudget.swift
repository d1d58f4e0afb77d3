import Hummingbird
import Synchronization

/// How many bytes of request bodies one process holds at once: each request takes the bytes of
/// its body as they arrive (``Request/bodyBytes()``) and gives them back when it is answered; a
/// request whose body would pass the limit is answered 503 (`Retry-After: 1`) without reading
/// the rest.
///
/// Why: every server accepts bodies of up to 4 MiB and holds about a thousand connections, and
/// a body is held two or three times over while it is read, copied and parsed. 64 concurrent
/// `POST /customers` of 4 MiB took a gateway from 41 to 344 MB of RSS (253 MB kept after), past
/// the 256 MiB limit of deploy/k8s, so a few dozen requests could have OOM-killed every gateway
/// pod (a review of deploy/). Bytes are counted as they arrive, not as declared: reserving the
/// declared `Content-Length` let eight connections that sent a head and no body hold the whole
/// budget for the 30 s of the body deadline, and every POST of the process was refused (a
/// review).
final class RequestBodyBudget: Sendable {
    /// Bytes of request bodies held at once by this process's servers: eight of the largest
    /// bodies, any number of ordinary ones.
    static let process = RequestBodyBudget(limit: 8 * maxBodySize)

    /// The bytes the request being handled has taken; nil outside a counted request (a call
    /// from another service of the process, whose caller counted the body).
    @TaskLocal static var account: Account?

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

    /// One request's share of a budget.
    final class Account: Sendable {
        let budget: RequestBodyBudget
        private let taken = Atomic<Int>(0)

        init(budget: RequestBodyBudget) { self.budget = budget }

        /// Takes `bytes` more of the budget; false when they do not fit.
        func take(_ bytes: Int) -> Bool {
            guard budget.reserve(bytes) else { return false }
            taken.add(bytes, ordering: .relaxed)
            return true
        }

        /// Gives back everything taken.
        func releaseAll() { budget.release(taken.exchange(0, ordering: .acquiringAndReleasing)) }

        /// The 503 of a body that does not fit.
        func refusal() -> ShopError {
            ShopError(
                status: 503,
                message: "the server holds \(budget.inUse >> 20) MiB of request bodies, its limit (\(budget.limit >> 20) MiB); this request's body was not read in full: nothing done, retry",
                field: "body", outcome: "not applied")
        }
    }

    /// Gives each request an ``Account`` of `budget` for its handling and releases it after;
    /// calls from another service of the process are not counted again.
    struct Middleware: RouterMiddleware {
        typealias Context = ShopRequestContext
        let budget: RequestBodyBudget

        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            guard !context.isInProcess else { return try await RequestBodyBudget.$account.withValue(nil) { try await next(request, context) } }
            let account = Account(budget: budget)
            defer { account.releaseAll() }
            return try await RequestBodyBudget.$account.withValue(account) { try await next(request, context) }
        }
    }
}
