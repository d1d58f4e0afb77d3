import ServiceLifecycle

/// A service that starts another once `ready` returns (its listeners bound, Redis answering), and
/// returns without starting it when the group shuts down first. An error from `ready` (Redis
/// refused the password) fails it.
public struct StartsWhenReady: Service {
    private let ready: @Sendable () async throws -> Void
    private let service: any Service

    public init(_ service: any Service, when ready: @escaping @Sendable () async throws -> Void) {
        self.service = service
        self.ready = ready
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown(ready)
        } catch is CancellationError where Task.isShuttingDownGracefully || Task.isCancelled {
            return
        }
        try await service.run()
    }
}

/// A service with nothing to do but wait for the graceful shutdown (the service a
/// ``StartsWhenReady`` runs when only its check matters).
public struct WaitsForShutdown: Service {
    public init() {}

    public func run() async throws {
        try await gracefulShutdown()
    }
}
