import HTTPTypes
import Hummingbird

/// `GET /admin/workers`, `POST /admin/workers/<name>/stop|start`: only where the gateway runs in
/// one process with the workers (`ordershop up`), and only with an admin token configured
/// (without one they are not served: 404). A stop answers once the worker has drained.
func addAdminRoutes(to router: Router<ShopRequestContext>, control: WorkerControl, token: String) {
    let admin = router.group("/admin").add(middleware: AdminGuard(token: token))
    admin.get("/workers") { _, _ in JSONResponse.encode(control.status) }
    admin.post("/workers/:name/:action") { _, context in
        let name = try context.parameters.require("name")
        guard let worker = control.services[name] else {
            throw ShopError(status: 404, message: "no worker named \(name); workers: \(control.services.keys.sorted().joined(separator: ", "))")
        }
        switch try context.parameters.require("action") {
        case "stop": try await worker.stop()
        case "start": try await worker.start()
        default: throw ShopError(status: 404, message: "unknown action; use stop or start")
        }
        return JSONResponse.encode(control.status)
    }
    addMethodNotAllowed(to: router, path: "/admin/workers", allowed: [.get])
    addMethodNotAllowed(to: router, path: "/admin/workers/:name/:action", allowed: [.post])
}

/// Admits a request to the admin routes when it carries `Authorization: Bearer <token>` and
/// does not come from a web page of another origin.
///
/// Why the origin check besides the token: a browser attaches no bearer token on its own, but a
/// page of another site must not be able to try tokens either (403 before the token is looked
/// at). A request with `Origin` (or `Sec-Fetch-Site: cross-site`) naming another host than the
/// one it was sent to is refused; command-line clients send neither.
struct AdminGuard: RouterMiddleware {
    typealias Context = ShopRequestContext
    let token: [UInt8]

    init(token: String) { self.token = Array(token.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let refusal = Self.foreignOrigin(request) {
            throw ShopError(status: 403, message: "admin routes refuse cross-origin requests (\(refusal))", field: "Origin")
        }
        let given = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard given.count > prefix.count, given.lowercased().hasPrefix(prefix.lowercased()),
            Self.constantTimeEqual(Array(given.utf8.dropFirst(prefix.utf8.count)), token)
        else {
            return Self.unauthorized("admin routes need Authorization: Bearer <admin token>", field: "Authorization")
        }
        return try await next(request, context)
    }

    /// A 401 in JSON, with the Bearer challenge (the admin routes' and the dashboard's).
    static func unauthorized(_ message: String, field: String) -> Response {
        var response = JSONResponse.bytes(ShopError(status: 401, message: message, field: field).body, status: .unauthorized)
        response.headers[.wwwAuthenticate] = "Bearer realm=\"ordershop-admin\""
        return response
    }

    /// Why a request comes from another origin, nil when it does not.
    static func foreignOrigin(_ request: Request) -> String? {
        if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!], site.lowercased() == "cross-site" {
            return "Sec-Fetch-Site: cross-site"
        }
        guard let origin = request.headers[.origin] else { return nil }
        let host = (request.head.authority ?? request.headers[HTTPField.Name("Host")!] ?? "").lowercased()
        // Origin is scheme://host[:port]; it must name the host (and port) the request was sent to.
        let originHost = origin.lowercased().split(separator: "/", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? ""
        return originHost.isEmpty || originHost != host ? "Origin \(LogText.escaped(origin, limit: 100)) is not \(LogText.escaped(host, limit: 100))" : nil
    }

    /// Compares without an early exit, so the time taken does not tell how much of a guess was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<b.count { difference |= (i < a.count ? a[i] : 0) ^ b[i] }
        return difference == 0
    }
}
