import Logging
import Synchronization

/// A bounded pool of ``RedisConnection``s for concurrent callers (HTTP handlers, workers).
///
/// At most ``maximumConnections`` connections exist; a caller that finds none free waits
/// (without blocking a thread) until one is returned, and leaves the queue at once, with a
/// `CancellationError`, when its task is cancelled. Connections are made lazily and reused.
/// Health probes (``probe()``) have a connection of their own besides.
public final class RedisConnectionPool: Sendable {
    public let configuration: RedisConfiguration
    public let maximumConnections: Int
    private let tlsContext: TLSContext?
    private let logger: Logger
    /// The connection of ``probe()``: one attempt to connect, short timeouts.
    private let probeConnection: RedisConnection
    /// Shared by the pooled and dedicated connections (``RedisConfiguration/roleCheckInterval``).
    private let roleWatch: ServerRoleWatch

    struct State {
        var idle: [RedisConnection] = []
        var total = 0
        var waiters: [(id: UInt64, continuation: CheckedContinuation<RedisConnection, any Error>)] = []
        var nextWaiterID: UInt64 = 0
        var closed = false
        /// Single commands waiting to ride the next coalesced batch (``CoalescedCommand``).
        var coalesced: [CoalescedCommand] = []
        /// A connection is draining ``coalesced`` now.
        var draining = false
    }
    let state = Mutex(State())

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
        roleWatch = ServerRoleWatch(interval: configuration.roleCheckInterval)
        var probe = configuration
        probe.reconnect.retryWindow = .zero
        probe.timeouts.connect = min(probe.timeouts.connect, .seconds(1))
        probe.timeouts.command = min(probe.timeouts.command, .seconds(2))
        probeConnection = try RedisConnection(configuration: probe, tlsContext: tlsContext, logger: self.logger)
    }

    /// Asks Redis for a health check, on a connection of the pool's own kept for probes: the
    /// pooled connections keep retrying for their reconnect window and may all be busy, both
    /// right for commands and wrong for a probe that must answer quickly; this one tries to
    /// connect once, with a connect timeout of at most 1 s and a command timeout of at most 2 s,
    /// and is reused from probe to probe (no new connection or TLS context per probe).
    ///
    /// With a role check (``RedisConfiguration/roleCheckInterval``, on by default: the pool
    /// expects the primary behind its endpoint) the probe sends `HELLO` with its `PING`, in one
    /// round trip, and a replica is an answer the pool cannot work with:
    /// ``RedisError/Code/readOnly``, saying so. Its connection is then closed, so that the next
    /// probe resolves the name again (a managed service moves it to the promoted node), and a
    /// replica found where a primary was moves the pool's connections (``ServerRoleWatch``, at
    /// most once per interval). Why: a worker's `/healthz` said ok while every write it made met
    /// READONLY (a user-style failover trial). `PING` still decides the rest: a server loading
    /// its data answers `HELLO` but not `PING`; one that refuses `HELLO` (before Redis 6.2) is
    /// judged by `PING` alone. Set the interval to nil for a pool meant to read from a replica.
    ///
    /// - Returns: nil when Redis answered (as a primary, with a role check), else why not.
    public func probe() async -> RedisError? {
        do {
            guard roleWatch.asksRole else {
                _ = try await probeConnection.send(PING())
                return nil
            }
            let replies = try await probeConnection.pipeline([ServerRoleWatch.query, ["PING"]])
            if case .error(let message) = replies[1] { return RedisError(serverReply: message) }
            switch ServerRoleWatch.role(inHELLOReply: replies[0]) {
            case nil:
                // HELLO refused (or silent): the PING's answer is the probe's.
                return nil
            case "master":
                roleWatch.observed(role: "master")
                return nil
            case let role?:
                roleWatch.probeFoundReplica()
                await probeConnection.close()
                return RedisError(
                    .readOnly, "the server answers as a \(role): it refuses writes (READONLY); point the URL at the primary, or at a name that follows a failover")
            }
        } catch let error as RedisError {
            return error
        } catch {
            return RedisError(.io, "\(error)")
        }
    }

    /// A new connection outside the pool (for ``withDedicatedConnection(forKeys:_:)``), sharing
    /// the pool's TLS context.
    func makeConnection(_ configuration: RedisConfiguration) throws(RedisError) -> RedisConnection {
        try RedisConnection(configuration: configuration, tlsContext: tlsContext, logger: logger, roleWatch: configuration.endpoint == self.configuration.endpoint ? roleWatch : nil)
    }

    /// A new connection of the pool's own (counted in its total by the caller).
    func makePooledConnection() throws(RedisError) -> RedisConnection {
        try RedisConnection(configuration: configuration, tlsContext: tlsContext, logger: logger, roleWatch: roleWatch)
    }

    /// Lends a connection to `body` and takes it back afterwards. Use it for a sequence of
    /// commands that must share one connection (WATCH/MULTI, or a blocking read).
    public func withConnection<T: Sendable>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let connection = try await lease()
        defer { release(connection) }
        return try await body(connection)
    }

    /// Sends one command; commands sent by many tasks at once share a connection's round trip
    /// (``sendCoalesced(_:)``).
    @discardableResult
    public func send<Command: RedisCommand>(_ command: Command) async throws -> Command.Response {
        try await sendCoalesced(command)
    }

    /// Sends raw arguments, as ``send(_:)-(Command)`` does.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RESPValue {
        try await sendCoalesced(RawCommand(arguments))
    }

    /// Sends one command on a connection of its own for the round trip: what
    /// ``sendCoalesced(_:)`` falls back to.
    func sendOnLentConnection<Command: RedisCommand>(_ command: Command) async throws -> Command.Response {
        try await withConnection { try await $0.send(command) }
    }

    /// Pipelines the commands on one connection.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        try await withConnection { try await $0.pipeline(commands) }
    }

    /// Runs the commands in MULTI/EXEC on one connection.
    public func transaction(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        try await withConnection { try await $0.transaction(commands) }
    }

    /// Runs a Lua script (EVALSHA with a NOSCRIPT fall-back), coalesced as ``send(_:)-(Command)`` is.
    @discardableResult
    public func evaluate(_ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = []) async throws -> RESPValue {
        let call = EVALSHA(script, keys: keys, arguments: arguments)
        return try await script.calling({ try await sendCoalesced(call) }, loadingWith: { _ = try await sendCoalesced(SCRIPTLOAD(script)) })
    }

    /// Closes every idle connection and fails waiting callers. Leased connections close on return.
    public func shutdown() async {
        let (idle, waiters, coalesced) = state.withLock { s in
            s.closed = true
            defer { s.idle = []; s.waiters = []; s.coalesced = [] }
            return (s.idle, s.waiters, s.coalesced)
        }
        for w in waiters { w.continuation.resume(throwing: RedisError(.poolClosed, "the connection pool is shut down")) }
        for command in coalesced { command.fail(RedisError(.poolClosed, "the connection pool is shut down; the command was not sent")) }
        for c in idle { await c.close() }
        await probeConnection.close()
    }

    private enum LeaseDecision {
        case use(RedisConnection)
        case create
        case wait
        case closed
    }

    private func lease() async throws -> RedisConnection {
        let connection = try await take()
        connection.checkServerAtNextCommand()
        return connection
    }

    private func take() async throws -> RedisConnection {
        let decision: LeaseDecision = state.withLock { s in
            if s.closed { return .closed }
            // A task pinned to one of the pool's connections (withPinnedExecution) gets that one
            // when it is free: its commands then run on the thread it is on, without a switch.
            if let i = s.idle.firstIndex(where: \.isPinnedHere) { return .use(s.idle.remove(at: i)) }
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
                return try makePooledConnection()
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
                    let handed: Result<RedisConnection, any Error>? = state.withLock { s in
                        if s.closed { return .failure(RedisError(.poolClosed, "the connection pool is shut down")) }
                        if let c = s.idle.popLast() { return .success(c) }
                        // Checked under the lock: a cancellation after this finds the waiter queued.
                        if Task.isCancelled { return .failure(CancellationError()) }
                        s.waiters.append((id, continuation))
                        return nil
                    }
                    if let handed { continuation.resume(with: handed) }
                }
            } onCancel: {
                let waiter = state.withLock { s -> CheckedContinuation<RedisConnection, any Error>? in
                    guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.waiters.remove(at: i).continuation
                }
                waiter?.resume(throwing: CancellationError())
            }
        }
    }

    /// Runs `body` on the thread of one of the pool's connections, which the pool then lends
    /// to the commands `body` sends whenever it is free: a tight loop of pipelines (a publisher)
    /// runs without a thread switch per command. See ``RedisConnection/withPinnedExecution(_:)``
    /// for what else runs on that thread meanwhile.
    public func withPinnedExecution<T>(_ body: () async throws -> T) async throws -> T {
        let connection = try await lease()
        release(connection)
        return try await connection.withPinnedExecution(body)
    }

    /// Callers waiting for a connection now (for tests of the queue): those waiting to be lent
    /// one, and coalesced commands while no connection drains them.
    public var waitingCallers: Int { state.withLock { $0.waiters.count + ($0.draining ? 0 : $0.coalesced.count) } }

    /// Takes a connection back: it goes to the first caller waiting to be lent one, else drains
    /// the coalesced commands that wait, else to the idle ones.
    func release(_ connection: RedisConnection) {
        enum Next {
            case idle
            case waiter(CheckedContinuation<RedisConnection, any Error>)
            case drain
        }
        let next: Next = state.withLock { s in
            if s.closed {
                s.total -= 1
                return .idle
            }
            if !s.waiters.isEmpty { return .waiter(s.waiters.removeFirst().continuation) }
            if !s.coalesced.isEmpty, !s.draining {
                s.draining = true
                return .drain
            }
            s.idle.append(connection)
            return .idle
        }
        switch next {
        case .idle: break
        case .waiter(let waiter): waiter.resume(returning: connection)
        case .drain: drainCoalesced(on: connection)
        }
    }
}
