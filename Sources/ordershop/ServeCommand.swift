import ArgumentParser
import Hummingbird
import OrderShop
import RedisClient
import ServiceLifecycle
import StreamWorker

/// `ordershop serve NAME`: one OrderShop HTTP service as its own process.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run one HTTP service: gateway, customer, product, inventory, order, billing or msg.",
        discussion: "Default ports: gateway 5000, customer 5001, product 5002, inventory 5003, order 5004, billing 5005, msg 5006. "
            + "SIGTERM or SIGINT stops it gracefully (requests in flight finish)."
    )

    @Argument(help: "The service: \(ServiceName.allCases.map(\.rawValue).joined(separator: ", ")).")
    var service: String

    @Option(help: "Address to listen on.")
    var host = "0.0.0.0"

    @Option(help: "Port to listen on (default: the service's own).")
    var port: Int?

    @OptionGroup var services: ServiceURLOptions
    @OptionGroup var redis: RedisOptions

    func validate() throws {
        guard ServiceName(rawValue: service) != nil else {
            throw ValidationError("unknown service '\(service)'; one of \(ServiceName.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let name = ServiceName(rawValue: service)!
        let logger = makeLogger("ordershop.\(name)")
        let client = try await connectRedis(try redis.configuration(), maximumConnections: 32, logger: logger)
        let context = try ShopContext(pool: client, logger: logger)
        let httpClient = makeHTTPClient()
        let app = buildApplication(
            for: name, host: host, port: port ?? name.defaultPort, context: context, httpClient: httpClient,
            gateway: GatewayOptions(addresses: services.addresses))
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: RedisClientService(client)), .init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await runServices(group, thenClose: httpClient, client)
    }
}
