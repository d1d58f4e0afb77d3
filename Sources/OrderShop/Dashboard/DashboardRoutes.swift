import Foundation
import HTTPTypes
import Hummingbird
import Logging
import RedisClient
import StreamWorker
import WorkerMetricsHTTP

/// The operations dashboard: a page (`GET /`), its data (`GET /api/state`), and the actions on
/// dead letters (`POST /api/replay`, `POST /api/purge`). `ordershop dashboard` serves it at `/`,
/// `ordershop up` on the gateway at `/dashboard`.
///
/// Access: the actions always need `Authorization: Bearer <admin token>` (the gateway's
/// ``AdminGuard``, which also refuses cross-origin requests) and are refused (401) when no token
/// is configured. The data is open only when the server listens on loopback and the request
/// names a loopback host; else it needs the token too. The page itself carries no data.
public struct Dashboard: Sendable {
    public let reader: OperationsReader
    public let history: RateHistory
    public let adminToken: String?
    /// Whether `GET /api/state` is served without the token.
    public let openReads: Bool
    /// What `GET /api/state` reads, shared by the requests of a second.
    let states: SnapshotCache

    /// `host`: the address the server listens on (reads are open when it is a loopback address).
    public init(reader: OperationsReader, history: RateHistory = RateHistory(), adminToken: String?, host: String) {
        self.reader = reader
        self.history = history
        self.adminToken = adminToken.flatMap { $0.isEmpty ? nil : $0 }
        self.openReads = Self.isLoopback(host)
        self.states = SnapshotCache { try await reader.read() }
    }

    /// Samples the charts' counters (run it beside the server).
    public func sampler(logger: Logger) -> RateSampler {
        RateSampler(reader: reader.countsOnly, history: history, logger: logger)
    }

    /// The routes, for a router of their own or under a path of the gateway's.
    public func routes() -> RouteCollection<ShopRequestContext> {
        let routes = RouteCollection(context: ShopRequestContext.self)
        routes.get("/") { _, _ in DashboardPage.response }
        let guarded = routes.group("/api").add(middleware: DashboardGuard(token: adminToken))
        let reads = openReads ? routes.group("/api").add(middleware: LoopbackReadGuard(token: adminToken)) : guarded
        let (states, history, actions) = (states, history, adminToken != nil)
        reads.get("/state") { _, _ in
            let snapshot = try await states.snapshot()
            return JSONResponse.encode(
                DashboardState(
                    time: snapshot.time, streams: snapshot.streams, unread: snapshot.unread, memory: snapshot.memory, rates: history.series(),
                    actions: actions))
        }
        guarded.post("/replay") { request, _ in
            let (dlq, ids) = try await target(of: request, orDeadLetters: false)
            let replayed = try await dlq.replay(ids: ids)
            await states.invalidate()
            return JSONResponse.encode(
                ActionResult(
                    replayed: replayed.ids.count, to: dlq.replayKey, notFound: ActionResult.notFound(ids, done: replayed.found),
                    notReplayed: replayed.cut.isEmpty ? nil : replayed.cut, why: replayed.cutExplanation))
        }
        guarded.post("/purge") { request, _ in
            let (dlq, ids) = try await target(of: request, orDeadLetters: true)
            let purged = try await dlq.purge(ids: ids)
            await states.invalidate()
            return JSONResponse.encode(ActionResult(purged: purged, notFound: ActionResult.notFound(ids, done: purged)))
        }
        // Outside the guards: which methods a path takes is no secret.
        addMethodNotAllowed(to: routes, path: "/", allowed: [.get])
        addMethodNotAllowed(to: routes, path: "/api/state", allowed: [.get])
        addMethodNotAllowed(to: routes, path: "/api/replay", allowed: [.post])
        addMethodNotAllowed(to: routes, path: "/api/purge", allowed: [.post])
        return routes
    }

    /// The dead letters a request names: `{"stream": ..., "group": ..., "ids": [...]}` (no ids: all).
    private func target(of request: Request, orDeadLetters: Bool) async throws -> (DeadLetters, [String]?) {
        try requireJSONBody(request)
        let action = try ActionRequest(parsing: try await request.bodyBytes())
        do {
            try DeadLetters.requireValid(action.ids)
        } catch {
            throw ShopError.badRequest("\(error)", field: "ids")
        }
        // On a cluster, a stream no primary holds (a typo) was asked of the first primary, whose
        // MOVED came back as a 500 (found by a user-style test, 2026-12-05).
        guard let node = try await reader.holder(of: action.stream, group: action.group) else {
            throw ShopError(status: 404, message: "\(action.stream) has no consumer groups: no primary holds it or its dead letters; nothing done")
        }
        let dlq = DeadLetters(client: node, stream: action.stream, group: action.group)
        do {
            try await dlq.requireGroup(orDeadLetters: orDeadLetters)
        } catch let missing as DeadLetters.NoSuchGroup {
            throw ShopError(status: 404, message: missing.description)
        }
        return (dlq, action.ids)
    }

    /// Whether `host` is a loopback address (reads are open there): `localhost`, `::1` or an
    /// IPv4 address in 127.0.0.0/8 written as one (four decimal parts). A name that only begins
    /// with "127." (`127.0.0.1.attacker.example`, which a rebinding page can point at
    /// 127.0.0.1) is not: it read the whole state without the token (a review).
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        if h == "localhost" || h == "::1" || h == "[::1]" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "127" else { return false }
        return parts.allSatisfy { part in
            (1...3).contains(part.count) && part.allSatisfy { $0.isASCII && $0.isNumber } && Int(part).map { $0 <= 255 } == true
        }
    }
}

/// What `GET /api/state` answers.
struct DashboardState: Encodable {
    var time: Double
    var streams: [OperationsSnapshot.Stream]
    /// Nodes not read (the page says so above the streams); absent when every node was read.
    var unread: [OperationsSnapshot.UnreadNode]?
    var memory: [OperationsSnapshot.NodeMemory]?
    var rates: [RateHistory.Series]
    /// Whether an admin token is configured (the page greys the buttons out otherwise).
    var actions: Bool
}

struct ActionRequest {
    var stream: String
    var group: String
    /// nil: every dead letter of the group.
    var ids: [String]?

    static let expected = "expected {\"stream\": ..., \"group\": ..., \"ids\": [...]} (ids left out: every dead letter of the group)"

    /// Read as a command body is (strictly: a duplicate key is refused, not the first one
    /// taken). `ids` must be left out to act on all: `"ids": null` was taken for "all", so a
    /// client that sent null for "none selected" purged the whole group (a trial).
    init(parsing body: [UInt8]) throws {
        let value: JSONValue
        do {
            value = try JSONValue.parse(body)
        } catch {
            throw ShopError.badRequest("\(error.message); \(Self.expected)", field: "body")
        }
        guard case .object(let fields) = value else { throw ShopError.badRequest(Self.expected, field: "body") }
        func text(_ name: String) throws -> String {
            guard case .string(let s)? = fields[name] else {
                let problem = fields[name] == nil ? "it has no field '\(name)'" : "its field '\(name)' is not a string"
                throw ShopError.badRequest("\(problem); \(Self.expected)", field: name)
            }
            return s
        }
        stream = try text("stream")
        group = try text("group")
        switch fields["ids"] {
        case nil:
            ids = nil
        case .array(let items)?:
            ids = try items.map { item in
                guard case .string(let id) = item else { throw ShopError.badRequest("field 'ids' must list ids as strings; \(Self.expected)", field: "ids") }
                return id
            }
        case let other?:
            throw ShopError.badRequest(
                "field 'ids' must be a list of dead-letter ids, not \(other.kind) (leave it out to act on every dead letter of the group)", field: "ids")
        }
    }
}

struct ActionResult: Encodable {
    var replayed: Int?
    var to: String?
    var purged: Int?
    /// How many of the ids given are not (or no longer) dead letters of the group: another
    /// operator handled them, or they were mistyped. Absent when every one was found. A purge of
    /// ids that were gone answered `{"purged":0}` and the page said "purged 0", as if done (a
    /// trial); `ordershop dlq` exits 1 then.
    var notFound: Int?
    /// Letters a replay left because they lack fields of their entry (``DeadLetters/Replayed/cut``).
    var notReplayed: [String]?
    /// Why, when something was left.
    var why: String?

    static func notFound(_ ids: [String]?, done: Int) -> Int? {
        guard let ids else { return nil }
        let missing = DeadLetters.normalized(ids).count - done
        return missing > 0 ? missing : nil
    }
}

/// The gateway's ``AdminGuard`` when a token is configured; without one every request is
/// refused (401), so that a dashboard started without `--admin-token` cannot act at all.
struct DashboardGuard: RouterMiddleware {
    typealias Context = ShopRequestContext
    let admin: AdminGuard?

    init(token: String?) { admin = token.map(AdminGuard.init(token:)) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let admin { return try await admin.handle(request, context: context, next: next) }
        return AdminGuard.unauthorized("no admin token is configured: start with --admin-token or ORDERSHOP_ADMIN_TOKEN", field: "Authorization")
    }
}

/// Lets a read through without the token when the request names a loopback host (`Host`, or the
/// authority of the request line); any other goes to ``DashboardGuard``. Why: a web page can
/// point a name of its own at 127.0.0.1 (DNS rebinding) and then read the dashboard as if it were
/// the same origin; its requests still carry its own name as Host.
struct LoopbackReadGuard: RouterMiddleware {
    typealias Context = ShopRequestContext
    let guarded: DashboardGuard

    init(token: String?) { guarded = DashboardGuard(token: token) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let named = [request.head.authority, request.headers[HTTPField.Name("Host")!]].compactMap { $0 }
        if !named.isEmpty, named.allSatisfy({ Dashboard.isLoopback(Self.hostName($0)) }), !Self.fromAnotherSite(request) {
            return try await next(request, context)
        }
        if guarded.admin == nil {
            // Why this request and not one to 127.0.0.1: "no admin token is configured" sent an
            // operator who opened http://<hostname>:5080/ looking for a token (a trial).
            let foreign = named.map(Self.hostName).first { !Dashboard.isLoopback($0) }
            if foreign == nil, !named.isEmpty {
                return AdminGuard.unauthorized(
                    "the browser says this read comes from a page of another origin (Sec-Fetch-Site or Origin): without an admin token only the dashboard's own page reads it",
                    field: "Origin")
            }
            let host = LogText.escaped(foreign ?? "no host", limit: 100)
            return AdminGuard.unauthorized(
                "without an admin token the dashboard is read only through a loopback name (127.0.0.1, localhost, [::1]); "
                    + "this request names \(host): open it as http://127.0.0.1:<port>/, or start with --admin-token",
                field: "Host")
        }
        return try await guarded.handle(request, context: context, next: next)
    }

    /// Whether a browser says the request comes from a page of another origin: `Sec-Fetch-Site`
    /// other than same-origin or none (typed in, a bookmark), or an `Origin` that is not a
    /// loopback name. Such a read needs the token: a page elsewhere could otherwise make every
    /// visitor's browser read the state over and over (`fetch(..., {mode: "no-cors"})`; five
    /// such reads cost Redis 4.6 s of SCAN with a million keys, a review), though it cannot see
    /// the answer.
    static func fromAnotherSite(_ request: Request) -> Bool {
        if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!]?.lowercased(), site != "same-origin", site != "none" { return true }
        guard let origin = request.headers[.origin]?.lowercased() else { return false }
        // The page's own origin: this server, over plain HTTP, as the request names it. Another
        // loopback port or scheme is another origin (`http://127.0.0.1:8080` read the state, a trial).
        guard let host = (request.headers[HTTPField.Name("Host")!] ?? request.head.authority)?.lowercased() else { return true }
        return origin != "http://\(host)"
    }

    /// `host[:port]` or `[v6]:port` without the port.
    static func hostName(_ authority: String) -> String {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") { return String(authority[...close]) }
        return authority.split(separator: ":", maxSplits: 1).first.map(String.init) ?? authority
    }
}

/// `ordershop dashboard`'s router: the dashboard at `/`, and `/healthz`.
public func buildDashboardRouter(_ dashboard: Dashboard) -> Router<ShopRequestContext> {
    let router = Router(context: ShopRequestContext.self)
    router.add(middleware: JSONErrorMiddleware())
    router.get("/healthz") { _, _ in JSONResponse.encode(["status": "ok", "service": "dashboard"]) }
    addMethodNotAllowed(to: router, path: "/healthz", allowed: [.get])
    router.addRoutes(dashboard.routes())
    return router
}

/// `ordershop dashboard` as a Hummingbird application (a Service for a ServiceGroup).
public func buildDashboardApplication(
    _ dashboard: Dashboard, host: String, port: Int, logger: Logger, limits: HTTPServerLimits = .monitoring,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        router: buildDashboardRouter(dashboard), server: .http1KeepingConnectionRules(limits: limits),
        configuration: limits.applicationConfiguration(address: .hostname(host, port: port), serverName: "ordershop-dashboard"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
        logger: logger)
}
