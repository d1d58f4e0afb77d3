import Logging
import Synchronization

/// A bounded pool of ``RedisConnection``s for concurrent callers (HTTP handlers, workers).
///
/// At most ``maximumConnections`` connections exist; a caller that finds none free waits
/// (without blocking a thread) until one is returned. Connections are made lazily and reused.
public final class RedisConnectionPool: Sendable {
    public let configuration: RedisConfiguration
    public let maximumConnections: Int
    private let tlsContext: TLSContext?
    private let logger: Logger

    private struct State {
        var idle: [RedisConnection] = []
        var total = 0
        var waiters: [(id: UInt64, continuation: CheckedContinuation<RedisConnection, any Error>)] = []
        var nextWaiterID: UInt64 = 0
        var closed = false
    }
    private let state = Mutex(State())

    public init(configuration: RedisConfiguration, maximumConnections: Int = 8, logger: Logger? = nil) throws(RedisError) {
        precondition(maximumConnections > 0)
        self.configuration = configuration
        self.maximumConnections = maximumConnections
        self.logger = logger ?? Logger(label: "redis.pool")
        if case .enable(let settings) = configuration.tls {
            tlsContext = try TLSContext(settings)
        } else {
            tlsContext = nil
        }
    }

    /// Lends a connection to `body` and takes it back afterwards. Use it for a sequence of
    /// commands that must share one connection (WATCH/MULTI, or a blocking read).
    public func withConnection<T: Sendable>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let connection = try await lease()
        defer { release(connection) }
        return try await body(connection)
    }

    /// Sends one command on any free connection.
    @discardableResult
    public func send<Command: RedisCommand>(_ command: Command) async throws -> Command.Response {
        try await withConnection { try await $0.send(command) }
    }

    /// Sends raw arguments on any free connection.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RESPValue {
        try await withConnection { try await $0.send(arguments) }
    }

    /// Pipelines the commands on one connection.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        try await withConnection { try await $0.pipeline(commands) }
    }

    /// Runs the commands in MULTI/EXEC on one connection.
    public func transaction(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        try await withConnection { try await $0.transaction(commands) }
    }

    /// Runs a Lua script (EVALSHA with a NOSCRIPT fall-back).
    @discardableResult
    public func evaluate(_ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = []) async throws -> RESPValue {
        try await withConnection { try await $0.evaluate(script, keys: keys, arguments: arguments) }
    }

    /// Closes every idle connection and fails waiting callers. Leased connections close on return.
    public func shutdown() async {
        let (idle, waiters) = state.withLock { s in
            s.closed = true
            defer { s.idle = []; s.waiters = [] }
            return (s.idle, s.waiters)
        }
        for w in waiters { w.continuation.resume(throwing: RedisError(.poolClosed, "the connection pool is shut down")) }
        for c in idle { await c.close() }
    }

    private enum LeaseDecision {
        case use(RedisConnection)
        case create
        case wait
        case closed
    }

    private func lease() async throws -> RedisConnection {
        let decision: LeaseDecision = state.withLock { s in
            if s.closed { return .closed }
            if let c = s.idle.popLast() { return .use(c) }
            if s.total < maximumConnections {
                s.total += 1
                return .create
            }
            return .wait
        }
        switch decision {
        case .use(let c): return c
        case .closed: throw RedisError(.poolClosed, "the connection pool is shut down")
        case .create:
            do {
                return try RedisConnection(configuration: configuration, tlsContext: tlsContext, logger: logger)
            } catch {
                state.withLock { $0.total -= 1 }
                throw error
            }
        case .wait:
            let id = state.withLock { s in
                s.nextWaiterID += 1
                return s.nextWaiterID
            }
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let handed: RedisConnection?? = state.withLock { s in
                        if s.closed { return .some(nil) }
                        if let c = s.idle.popLast() { return .some(c) }
                        s.waiters.append((id, continuation))
                        return nil
                    }
                    switch handed {
                    case .some(.some(let c)): continuation.resume(returning: c)
                    case .some(.none): continuation.resume(throwing: RedisError(.poolClosed, "the connection pool is shut down"))
                    case .none: break
                    }
                }
            } onCancel: {
                let waiter = state.withLock { s -> CheckedContinuation<RedisConnection, any Error>? in
                    guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.waiters.remove(at: i).continuation
                }
                waiter?.resume(throwing: RedisError(.cancelled, "cancelled while waiting for a connection"))
            }
        }
    }

    private func release(_ connection: RedisConnection) {
        let waiter: CheckedContinuation<RedisConnection, any Error>? = state.withLock { s in
            if s.closed {
                s.total -= 1
                return nil
            }
            if !s.waiters.isEmpty { return s.waiters.removeFirst().continuation }
            s.idle.append(connection)
            return nil
        }
        waiter?.resume(returning: connection)
    }
}
