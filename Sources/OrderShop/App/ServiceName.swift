import Foundation
import Synchronization

/// The HTTP services of OrderShop, each runnable as its own process (`ordershop serve NAME`).
public enum ServiceName: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case gateway, customer, product, inventory, order, billing, msg

    public var description: String { rawValue }

    /// The port it listens on by default (the gateway on 5000 like the original).
    public var defaultPort: Int {
        switch self {
        case .gateway: 5000
        case .customer: 5001
        case .product: 5002
        case .inventory: 5003
        case .order: 5004
        case .billing: 5005
        case .msg: 5006
        }
    }

    /// The environment variable with its base URL, for the processes that call it.
    public var environmentVariable: String? {
        self == .gateway ? nil : "\(rawValue.uppercased())_SERVICE_URL"
    }

    /// The entity type it owns (commands for it are forwarded here), if any.
    public var entityType: EntityType? {
        switch self {
        case .customer: .customer
        case .product: .product
        case .inventory: .inventory
        case .order: .order
        case .billing: .billing
        case .gateway, .msg: nil
        }
    }

    /// The service that owns an entity type.
    public static func owner(of type: EntityType) -> ServiceName {
        switch type {
        case .customer: .customer
        case .product: .product
        case .inventory: .inventory
        case .order: .order
        case .billing: .billing
        }
    }
}

/// The workers (`ordershop work NAME`), each a consumer group.
public enum WorkerName: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case crm, billing

    public var description: String { rawValue }
    /// The consumer group: the worker's name.
    public var group: String { rawValue }
    /// The port of its metrics endpoint by default.
    public static let defaultMetricsPort = 9100
}

/// Where each service can be reached: flags over environment (`CUSTOMER_SERVICE_URL`, ...) over
/// `http://127.0.0.1:<default port>`.
public struct ServiceAddresses: Sendable, Hashable {
    public var urls: [ServiceName: String]

    public init(urls: [ServiceName: String] = [:]) {
        self.urls = urls
    }

    /// The base URL of a service, without a trailing slash.
    public func url(_ service: ServiceName) -> String {
        var u = urls[service] ?? "http://127.0.0.1:\(service.defaultPort)"
        while u.hasSuffix("/") { u.removeLast() }
        return u
    }

    /// Addresses from the environment, with explicit overrides (flags) winning.
    public static func fromEnvironment(_ env: [String: String], overrides: [ServiceName: String] = [:]) -> ServiceAddresses {
        var urls: [ServiceName: String] = [:]
        for s in ServiceName.allCases {
            if let v = s.environmentVariable.flatMap({ env[$0] }), !v.isEmpty { urls[s] = v }
        }
        for (s, v) in overrides { urls[s] = v }
        return ServiceAddresses(urls: urls)
    }

    /// Why `url` cannot be a service's base URL (nil: it can): an http(s) URL with a host.
    public static func problem(with url: String) -> String? {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased() else { return "is not a URL" }
        guard scheme == "http" || scheme == "https" else { return "is not an http(s) URL" }
        guard let host = parsed.host, !host.isEmpty else { return "has no host" }
        return nil
    }

    /// Every service on one host with the given ports (`ordershop up`, tests).
    public static func loopback(ports: [ServiceName: Int], host: String = "127.0.0.1") -> ServiceAddresses {
        ServiceAddresses(urls: ports.mapValues { "http://\(host):\($0)" })
    }
}

/// Where each service is, shared by the callers in one process and updated when a service
/// listens: a service started on port 0 gets its port from the kernel, and callers learn it here.
public final class ServiceDirectory: Sendable {
    private let addresses: Mutex<ServiceAddresses>
    private let host: String
    /// The services its callers reach without HTTP (``InProcessServices``); nil: all over HTTP.
    public let inProcess: InProcessServices?

    public init(_ addresses: ServiceAddresses, host: String = "127.0.0.1", inProcess: InProcessServices? = nil) {
        self.addresses = Mutex(addresses)
        self.host = host
        self.inProcess = inProcess
    }

    /// The base URL of a service now.
    public func url(_ service: ServiceName) -> String { addresses.withLock { $0.url(service) } }

    /// Records the port a service listens on.
    public func listening(_ service: ServiceName, port: Int) {
        addresses.withLock { $0.urls[service] = "http://\(host):\(port)" }
    }

    public var snapshot: ServiceAddresses { addresses.withLock { $0 } }
}
