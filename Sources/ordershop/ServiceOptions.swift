import ArgumentParser
import Foundation
import Logging
import OrderShop

/// Where the other services are, for the processes that call them: flags over the environment
/// (`CUSTOMER_SERVICE_URL`, ... `MSG_SERVICE_URL`) over `http://127.0.0.1:<default port>`.
struct ServiceURLOptions: ParsableArguments {
    @Option(name: .customLong("customer-url"), help: "Customer service base URL (default: $CUSTOMER_SERVICE_URL, else http://127.0.0.1:5001)")
    var customer: String?
    @Option(name: .customLong("product-url"), help: "Product service base URL (default: $PRODUCT_SERVICE_URL, else http://127.0.0.1:5002)")
    var product: String?
    @Option(name: .customLong("inventory-url"), help: "Inventory service base URL (default: $INVENTORY_SERVICE_URL, else http://127.0.0.1:5003)")
    var inventory: String?
    @Option(name: .customLong("order-url"), help: "Order service base URL (default: $ORDER_SERVICE_URL, else http://127.0.0.1:5004)")
    var order: String?
    @Option(name: .customLong("billing-url"), help: "Billing service base URL (default: $BILLING_SERVICE_URL, else http://127.0.0.1:5005)")
    var billing: String?
    @Option(name: .customLong("msg-url"), help: "Msg service base URL (default: $MSG_SERVICE_URL, else http://127.0.0.1:5006)")
    var msg: String?

    /// A URL that can never be called (no scheme, no host: `notaurl`, `127.0.0.1:5006`) is
    /// refused at start. It was taken, and every call failed as "unavailable": a CRM worker
    /// with `--msg-url notaurl` held its share of the entries, retrying for the 24-h window,
    /// while reporting healthy (a trial).
    func validate() throws {
        let flags: [(ServiceName, String?)] = [(.customer, customer), (.product, product), (.inventory, inventory), (.order, order), (.billing, billing), (.msg, msg)]
        let environment = ProcessInfo.processInfo.environment
        for (service, flag) in flags {
            let given = flag.map { ("--\(service.rawValue)-url", $0) }
                ?? service.environmentVariable.flatMap { name in environment[name].flatMap { $0.isEmpty ? nil : (name, $0) } }
            guard let (source, text) = given else { continue }
            if let problem = ServiceAddresses.problem(with: text) {
                throw ValidationError("\(source) \(text.debugDescription) \(problem); give a base URL such as http://127.0.0.1:\(service.defaultPort)")
            }
        }
    }

    var addresses: ServiceAddresses {
        var overrides: [ServiceName: String] = [:]
        overrides[.customer] = customer
        overrides[.product] = product
        overrides[.inventory] = inventory
        overrides[.order] = order
        overrides[.billing] = billing
        overrides[.msg] = msg
        return ServiceAddresses.fromEnvironment(ProcessInfo.processInfo.environment, overrides: overrides)
    }
}

/// A logger for a command: level from `LOG_LEVEL` (default info), to stderr, each line with the
/// trace and span id of the span it was logged in.
func makeLogger(_ label: String) -> Logger {
    _ = loggingBootstrapped
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
    return logger
}

private let loggingBootstrapped: Void = LoggingSystem.bootstrap(ShopLogHandler.init(label:metadataProvider:), metadataProvider: ShopTracing.loggingMetadata())

extension RedisOptions {
    /// True when Redis was configured by flag or environment (not the built-in default).
    var isConfigured: Bool {
        url != nil || !(ProcessInfo.processInfo.environment["REDIS_URL"] ?? "").isEmpty
    }
}
