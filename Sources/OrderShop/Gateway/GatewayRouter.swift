import AsyncHTTPClient
import Hummingbird
import NIOCore

/// The gateway: the original's front door on port 5000. Queries are answered from the read
/// models in Redis; commands are forwarded over HTTP to the service that owns the entity.
public struct GatewayOptions: Sendable {
    /// Where the owning services are.
    public var directory: ServiceDirectory
    /// How long a command forwarded over HTTP may take before the gateway answers 503 (an owner
    /// called in this process has none: see ``InProcessServices``).
    public var forwardTimeout: Duration
    /// Start/stop control of in-process workers (`ordershop up` only): `/admin/...` routes.
    public var admin: WorkerControl?
    /// The bearer token the `/admin/...` routes require; without one (nil or empty) they are not served.
    public var adminToken: String?
    /// The operations dashboard at `/dashboard` (`ordershop up`); nil: not served.
    public var dashboard: Dashboard?
    /// A deliberate defect for chaos runs (`serve gateway --planted-bug
    /// gateway-drops-idempotency-key`): creates are forwarded without their `Idempotency-Key`.
    public var plantedDropsIdempotencyKeys = false

    public init(
        addresses: ServiceAddresses = .init(), forwardTimeout: Duration = .seconds(30), admin: WorkerControl? = nil, adminToken: String? = nil,
        dashboard: Dashboard? = nil
    ) {
        self.init(directory: ServiceDirectory(addresses), forwardTimeout: forwardTimeout, admin: admin, adminToken: adminToken, dashboard: dashboard)
    }

    public init(
        directory: ServiceDirectory, forwardTimeout: Duration = .seconds(30), admin: WorkerControl? = nil, adminToken: String? = nil,
        dashboard: Dashboard? = nil
    ) {
        self.directory = directory
        self.forwardTimeout = forwardTimeout
        self.admin = admin
        self.adminToken = adminToken
        self.dashboard = dashboard
    }
}

/// The gateway's router (tests drive it without a socket).
public func buildGatewayRouter(context: ShopContext, httpClient: HTTPClient, options: GatewayOptions = .init()) -> Router<ShopRequestContext> {
    let router = makeServiceRouter(.gateway)
    addHealthRoutes(to: router, service: "gateway", health: context.health)
    let readModel = context.readModel
    for type in EntityType.allCases {
        addQueryRoutes(to: router, type: type, readModel: readModel)
        let owner = ServiceName.owner(of: type)
        let forwarder = Forwarder(
            service: owner, directory: options.directory, client: httpClient,
            timeout: .nanoseconds(Int64(options.forwardTimeout.components.seconds) * 1_000_000_000 + options.forwardTimeout.components.attoseconds / 1_000_000_000),
            dropsIdempotencyKey: options.plantedDropsIdempotencyKeys)
        addCommandRoutes(
            to: router, type: type,
            create: { try await forwarder.forward($0, context: $1) },
            update: { request, ctx, _ in try await forwarder.forward(request, context: ctx) },
            delete: { request, ctx, _ in try await forwarder.forward(request, context: ctx) })
        addMethodNotAllowed(to: router, type: type)
    }
    router.get("/report") { _, _ in JSONResponse.bytes(try await readModel.report()) }
    addMethodNotAllowed(to: router, path: "/report", allowed: [.get])
    if let admin = options.admin, let token = options.adminToken, !token.isEmpty { addAdminRoutes(to: router, control: admin, token: token) }
    if let dashboard = options.dashboard { router.addRoutes(dashboard.routes(), atPath: "/dashboard") }
    return router
}
