import Foundation
import NIOCore
import ServiceLifecycle
import Synchronization

/// The HTTP endpoints a process opens.
public enum Listener: Sendable, Hashable, CustomStringConvertible {
    /// An OrderShop HTTP service (the gateway, an owner, msg).
    case service(ServiceName)
    /// A worker process's `/metrics` and `/healthz`.
    case metrics
    /// The redis-server child of `ordershop up`.
    case redisServer
    /// `ordershop dashboard`.
    case dashboard

    public var description: String {
        switch self {
        case .service(.gateway): "gateway"
        case .service(let name): "\(name) service"
        case .metrics: "metrics endpoint"
        case .redisServer: "redis-server child"
        case .dashboard: "dashboard"
        }
    }
}

/// A listener that could not be opened: which one, where, and the system's reason.
public struct ListenFailure: Error, CustomStringConvertible {
    public let listener: Listener
    public let host: String
    public let port: Int
    /// For a failed bind, the system's words ("Address already in use").
    public let reason: String

    public init(listener: Listener, host: String, port: Int, reason: String) {
        self.listener = listener
        self.host = host
        self.port = port
        self.reason = reason
    }

    /// From the error a server threw before it listened: errno's text for a socket error.
    init(listener: Listener, host: String, port: Int, error: any Error) {
        let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
        self.init(listener: listener, host: host, port: port, reason: reason)
    }

    public var description: String { "cannot listen on \(host):\(port) for the \(listener): \(reason)" }

    /// The one line a command prints: the failure and the flag that changes the port (for a
    /// port that is taken; `--host 999.1.1.1` was told to choose another port too).
    public func line(flag: String) -> String {
        reason.contains("in use") ? "\(self); choose another port with \(flag)" : "\(self); check the address (--host) and the port (\(flag))"
    }
}

/// Runs an HTTP server and tells apart its two ways of failing: before it listens (a taken port,
/// an address that is not ours: a ``ListenFailure`` naming address, port and reason) and after.
///
/// `make` builds the server with the callback it must call once it listens (Hummingbird's
/// `onServerRunning`); the listener then calls `onListening` with the bound port.
public struct HTTPListener: Service {
    public let listener: Listener
    public let host: String
    public let port: Int
    private let server: any Service
    private let listening = Listening()

    private final class Listening: Sendable {
        private let flag = Atomic<Bool>(false)
        func set() { flag.store(true, ordering: .releasing) }
        var isSet: Bool { flag.load(ordering: .acquiring) }
    }

    public init(
        _ listener: Listener, host: String, port: Int, onListening: @escaping @Sendable (Int) async -> Void = { _ in },
        make: (_ onRunning: @escaping @Sendable (Int) async -> Void) -> any Service
    ) {
        self.listener = listener
        self.host = host
        self.port = port
        let listening = self.listening
        self.server = make { bound in
            listening.set()
            await onListening(bound)
        }
    }

    public func run() async throws {
        do {
            try await server.run()
        } catch where !listening.isSet && !Task.isCancelled {
            throw ListenFailure(listener: listener, host: host, port: port, error: error)
        }
    }
}
