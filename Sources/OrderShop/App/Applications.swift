import AsyncHTTPClient
import Hummingbird
import Logging
import NIOCore
import RedisClient
import ServiceLifecycle
import WorkerMetricsHTTP

/// The router of one OrderShop service (tests drive it without a socket).
///
/// - gateway: queries from Redis, commands forwarded (``buildGatewayRouter(context:httpClient:options:)``);
/// - customer, product, inventory, order, billing: the owner's commands and its queries;
/// - msg: `POST /email` (``buildMsgRouter(context:options:)``).
///
/// Every service answers `GET /healthz` and `GET /livez` (``addHealthRoutes(to:service:health:)``).
public func buildRouter(
    for service: ServiceName, context: ShopContext, httpClient: HTTPClient,
    gateway: GatewayOptions = .init(), msg: MsgOptions = .init()
) -> Router<ShopRequestContext> {
    switch service {
    case .gateway: return buildGatewayRouter(context: context, httpClient: httpClient, options: gateway)
    case .msg: return buildMsgRouter(context: context, options: msg)
    case .customer: return buildOwnerRouter(Customer.self, context: context)
    case .product: return buildOwnerRouter(Product.self, context: context)
    case .inventory: return buildOwnerRouter(Inventory.self, context: context)
    case .order: return buildOwnerRouter(Order.self, context: context)
    case .billing: return buildOwnerRouter(Billing.self, context: context)
    }
}

/// The router of the service that owns `E`: its commands, its queries, `/healthz` and `/livez`.
public func buildOwnerRouter<E: ShopEntity>(_: E.Type, context: ShopContext) -> Router<ShopRequestContext> {
    let owner = ServiceName.owner(of: E.type)
    let router = makeServiceRouter(owner)
    let name = owner.rawValue
    addHealthRoutes(to: router, service: name, health: context.health)
    addQueryRoutes(to: router, type: E.type, readModel: context.readModel)
    EntityService<E>(context: context).register(on: router)
    addMethodNotAllowed(to: router, type: E.type)
    return router
}

/// One OrderShop service as a Hummingbird application (a Service for a ServiceGroup).
public func buildApplication(
    for service: ServiceName, host: String, port: Int, context: ShopContext, httpClient: HTTPClient,
    gateway: GatewayOptions = .init(), msg: MsgOptions = .init(), limits: HTTPServerLimits = .init(),
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    buildApplication(
        for: service, responder: buildRouter(for: service, context: context, httpClient: httpClient, gateway: gateway, msg: msg).buildResponder(),
        host: host, port: port, logger: serviceLogger(service, context), limits: limits, onServerRunning: onServerRunning)
}

/// The logger of one service's requests: the shop's, with the service's name.
func serviceLogger(_ service: ServiceName, _ context: ShopContext) -> Logger {
    var logger = context.logger
    logger[metadataKey: "service"] = "\(service)"
    return logger
}

/// One OrderShop service serving a router built already (which ``InProcessServices`` may call too).
func buildApplication(
    for service: ServiceName, responder: RouterResponder<ShopRequestContext>, host: String, port: Int, logger: Logger,
    limits: HTTPServerLimits = .init(), onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        responder: responder, server: .http1KeepingConnectionRules(limits: limits),
        configuration: limits.applicationConfiguration(address: .hostname(host, port: port), serverName: "ordershop-\(service)"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
        logger: logger)
}

/// An HTTP client for forwarding and for mails: many connections per host (the gateway forwards
/// concurrent commands), and a refused or timed-out connect fails the request at once instead of
/// being retried until the request's deadline: an owner that is down is a 503 now, and a worker
/// whose mail failed retries the event with its own backoff.
public func makeHTTPClient() -> HTTPClient {
    var configuration = HTTPClient.Configuration()
    // Idle connections are closed after 5 s, before the server's keep-alive timeout (15 s,
    // HTTPServerLimits) can close one just as it is reused.
    configuration.connectionPool = .init(idleTimeout: .seconds(5), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
    configuration.connectionPool.retryConnectionEstablishment = false
    configuration.timeout = .init(connect: .seconds(2), read: .seconds(30))
    // No tracing of its own: it would take the tracer bootstrapped when the client is made (none
    // in a process that makes it first) and add a second `traceparent` to the one the shop sets
    // (OutgoingTrace), which the receiver then cannot parse. The shop injects the context itself.
    configuration.tracing.tracer = nil
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}

/// Runs a process's services until they end (see ``runUntilSignalled(_:logger:)``: SIGTERM or
/// SIGINT, a second one, or a service that failed or ended), then shuts the HTTP client and the
/// Redis pool down, in every case.
public func runServices(
    _ services: [any Service], logger: Logger, maximumGracefulShutdown: Duration? = nil,
    thenClose httpClient: HTTPClient, _ pool: any RedisClientProtocol
) async throws {
    do {
        try await runUntilSignalled(processServiceGroup(services, logger: logger, maximumGracefulShutdown: maximumGracefulShutdown), logger: logger)
    } catch {
        try? await httpClient.shutdown()
        await pool.shutdown()
        throw error
    }
    try? await httpClient.shutdown()
    await pool.shutdown()
}
