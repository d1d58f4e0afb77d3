import Logging
import Synchronization

/// A client for Redis Cluster: every command goes to the primary that owns its keys' slot.
///
/// - Routing: the slot of a command's ``RedisCommand/keysAffected`` (CRC16 of the hash tag);
///   keys in different slots are refused before anything is sent (``RedisError/Code/crossSlot``).
/// - Redirects: MOVED updates the slot map at once and asks for a refresh; ASK sends `ASKING`
///   and the command to the importing node on one connection. At most
///   ``RedisClusterConfiguration/maxRedirects`` per command.
/// - Healing: TRYAGAIN, CLUSTERDOWN, MASTERDOWN, LOADING, READONLY, and a refused connection to
///   a dead primary are retried (with backoff and a refresh) within
///   ``RedisClusterConfiguration/retryWindow``: the command did not run. A command that may
///   have run (the connection dropped after it was written, no reply in time) is never
///   re-sent: it fails with ``RedisError/Code/outcomeUnknown`` or ``RedisError/Code/timeout``.
/// - Topology: `CLUSTER SHARDS` (`CLUSTER SLOTS` on servers before 7.0) from several nodes,
///   the majority view wins; refreshes are collapsed (callers that need one while one runs
///   wait for it). ``run()`` refreshes every ``RedisClusterConfiguration/refreshInterval`` and
///   on request (MOVED, a node that stopped answering): run it as a child task for as long as
///   the client is used.
public final class RedisClusterClient: Sendable {
    public let configuration: RedisClusterConfiguration
    let logger: Logger
    let counters = ClusterCounters()

    struct State {
        var map = SlotMap()
        var pools: [ClusterNodeAddress: RedisConnectionPool] = [:]
        var refreshing = false
        var refreshWaiters: [CheckedContinuation<Void, Never>] = []
        var lastRefresh: ContinuousClock.Instant?
        var lastRefreshError: RedisError?
        // The run() loop's wake-up: a pending request, or the loop waiting for one.
        var refreshRequested = false
        var runWaiter: CheckedContinuation<Void, Never>?
        var runWaiterCancelled = false
        /// Until when ``run()`` refreshes every ``RedisClusterConfiguration/suspectRefreshInterval``
        /// (a command to a node timed out or was cut off).
        var suspectUntil: ContinuousClock.Instant?
        var closed = false
    }
    let state = Mutex(State())

    public init(configuration: RedisClusterConfiguration, logger: Logger? = nil) throws(RedisError) {
        guard !configuration.seeds.isEmpty else { throw RedisError(.invalidConfiguration, "a Redis Cluster client needs at least one seed node") }
        self.configuration = configuration
        self.logger = logger ?? Logger(label: "redis.cluster")
    }

    /// Counts of redirects, retries and refreshes so far.
    public var statistics: ClusterStatistics { counters.snapshot }

    /// The shards as last discovered (empty before the first discovery).
    public var shards: [ClusterShardDescription] { state.withLock { $0.map.shards } }

    /// The primary the client would send a command for `slot` to now.
    public func primary(for slot: HashSlot) -> ClusterNodeAddress? { state.withLock { $0.map.primary(for: slot) } }

    /// Discovers the topology now (it is otherwise discovered by the first command).
    public func connect() async throws {
        try await refreshTopology(ifOlderThan: nil)
        if let error = state.withLock({ $0.map.isEmpty ? $0.lastRefreshError : nil }) { throw error }
    }

    /// Refreshes the topology every ``RedisClusterConfiguration/refreshInterval`` and when a
    /// redirect or a failing node asks for it, until the task is cancelled. Errors are logged:
    /// a failed refresh keeps the last map.
    public func run() async throws {
        while true {
            // Throws CancellationError when the task is cancelled: that ends the loop.
            try await waitForRefreshRequest(upTo: nextRefreshInterval())
            do {
                try await refreshTopology(ifOlderThan: configuration.refreshCooldown)
            } catch {
                // Logged by refreshTopology; the last map stays in use and the next turn tries again.
                try Task.checkCancellation()
            }
        }
    }

    // MARK: - Commands

    @discardableResult
    public func send<Command: RedisCommand>(_ command: Command) async throws -> Command.Response {
        let slot = try HashSlot.common(command.keysAffected, command: Self.name(of: command))
        return try await routed(slot: slot) { pool, asking in
            // After an ASK, the command and its ASKING share a lent connection.
            guard !asking else { return try await pool.withConnection { connection in try await Self.run(command, on: connection, asking: true) } }
            // A script the node lacks is loaded there, then called again (it did not run).
            guard let call = command as? EVALSHA else { return try await pool.sendCoalesced(command) }
            return try await call.script.calling({ try await pool.sendCoalesced(command) }, loadingWith: { _ = try await pool.sendCoalesced(SCRIPTLOAD(call.script)) })
        }
    }

    /// Sends each node its share of the commands in one pipeline (all nodes at once), then
    /// re-sends, one by one through the redirect logic, the commands a node redirected (they did not run).
    public func execute(_ commands: [any RedisCommand]) async -> [Result<RESPValue, RedisError>] {
        await pipeline(commands.map(ErasedCommand.init))
    }

    /// ``execute(_:)`` for commands of one type, each reply decoded in place.
    ///
    /// Specialized here for XADD: called from another module the generic body looks up type
    /// metadata for every `Result`, array and zip it touches, 12 % of the client's time when
    /// publishing (perf, 2026-12-02).
    @_specialize(where Command == XADD)
    public func pipeline<Command: RedisCommand>(_ commands: [Command]) async -> [Result<Command.Response, RedisError>] {
        var results = [Result<Command.Response, RedisError>?](repeating: nil, count: commands.count)
        var slots = [HashSlot?](repeating: nil, count: commands.count)
        for (index, command) in commands.enumerated() {
            do {
                // The name is built only for a CROSSSLOT error: built for every command it took
                // 5 % of the client's time in `bench client --cluster` (perf, 2026-12-02).
                slots[index] = try HashSlot.common(command.keysAffected, command: Self.name(of: command))
            } catch {
                results[index] = .failure(error)
            }
        }
        // Every command's node under one lock, not an async lookup and a lock per command.
        let byNode: [ClusterNodeAddress: [Int]]
        do {
            byNode = try await addresses(for: slots, skipping: results.map { $0 != nil })
        } catch {
            let failure = RedisError.wrapping(error)
            return results.map { $0 ?? .failure(failure) }
        }
        @Sendable func pipeline(_ address: ClusterNodeAddress, _ indices: [Int]) async -> NodeReplies<Command.Response> {
            do {
                let pool = try self.pool(for: address)
                let share = indices.count == commands.count ? commands : indices.map { commands[$0] }
                return NodeReplies(address: address, indices: indices, replies: .success(try await pool.pipelineCoalesced(share)))
            } catch {
                return NodeReplies(address: address, indices: indices, replies: .failure(RedisError.wrapping(error)))
            }
        }
        var answered: [NodeReplies<Command.Response>] = []
        if byNode.count == 1, let (address, indices) = byNode.first {
            // One node (a caller's pipeline on one slot, the common case): no child task, whose
            // start and join cost two thread wake-ups per round trip.
            answered = [await pipeline(address, indices)]
        } else {
            answered = await withTaskGroup(of: NodeReplies<Command.Response>.self) { group in
                for (address, indices) in byNode { group.addTask { await pipeline(address, indices) } }
                var all: [NodeReplies<Command.Response>] = []
                for await answer in group { all.append(answer) }
                return all
            }
        }
        var again: [Int] = []
        for answer in answered {
            switch answer.replies {
            case .success(let replies):
                for (index, reply) in zip(answer.indices, replies) {
                    guard case .serverError(let message) = reply else {
                        results[index] = reply.result
                        continue
                    }
                    let error = RedisError(serverReply: message)
                    switch ClusterErrorAction(error, from: answer.address) {
                    case .moved(let slot, let target):
                        // Learn from it now; the command goes again below.
                        counters.moved.add(1, ordering: .relaxed)
                        state.withLock { $0.map.assign(slot, to: target) }
                        requestRefresh()
                        again.append(index)
                    case .ask, .waitAndRetry: again.append(index)
                    case .nodeUnreachable, .fail: results[index] = .failure(error)
                    }
                }
            case .failure(let error):
                switch ClusterErrorAction(error, from: answer.address) {
                case .nodeUnreachable: again += answer.indices  // nothing was written
                default:
                    requestRefresh(after: error)
                    for index in answer.indices { results[index] = .failure(error) }
                }
            }
        }
        // In the order given, so that two commands on one key keep their order.
        for index in again.sorted() {
            do {
                results[index] = .success(try await send(commands[index]))
            } catch {
                results[index] = .failure(RedisError.wrapping(error))
            }
        }
        return results.map { $0! }
    }

    /// One node's replies to its share of a pipeline, with the commands' places in it.
    private struct NodeReplies<Response: Sendable>: Sendable {
        var address: ClusterNodeAddress
        var indices: [Int]
        var replies: Result<[DecodedReply<Response>], RedisError>
    }

    /// MULTI/EXEC on the primary of the commands' one slot. A slot being migrated (ASK) is waited
    /// out within the retry window rather than followed: EXEC on the importing node would need
    /// ASKING before every queued command.
    public func transaction(_ commands: [any RedisCommand]) async throws -> [RESPValue] {
        let slot = try HashSlot.common(commands.flatMap(\.keysAffected), command: "MULTI/EXEC")
        let arguments = commands.map(\.arguments)
        return try await routed(slot: slot) { pool, asking in
            if asking { throw RedisError(.tryAgain, "TRYAGAIN the transaction's slot is being migrated") }
            return try await pool.transaction(arguments)
        }
    }

    @discardableResult
    public func evaluate(_ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = []) async throws -> RESPValue {
        try await send(EVALSHA(script, keys: keys, arguments: arguments))
    }

    /// A connection to the primary of `keys`' slot, for a blocking read loop or WATCH/MULTI.
    /// A MOVED from a command on it updates the slot map before it reaches the caller. Until
    /// `body` starts, a primary that cannot be reached (refused: it died and its replica is not
    /// promoted yet) or a cluster that is healing is waited out within
    /// ``RedisClusterConfiguration/retryWindow``, as ``send(_:)`` does; once `body` started,
    /// its errors reach the caller and it is never run again.
    public func withConnection<T: Sendable>(
        forKeys keys: [RedisArgument], _ body: (RedisConnection) async throws -> T
    ) async throws -> T {
        try await beforeEntering(slot: try HashSlot.common(keys)) { address, enter in
            try await pool(for: address).withConnection { connection in
                // Connected (or found alive: an idle connection to a node that died is
                // noticed here) before `body` starts, so that a refused connect is retried. One
                // hop to the connection's thread; no hot path lends a cluster connection per command.
                try await connection.connect()
                enter()
                return try await body(connection)
            }
        }
    }

    /// Runs `body` on the thread of a connection to the primary of `keys`' slot: commands for
    /// that slot that `body` sends run there without a thread switch while that connection is
    /// free (a publisher's loop of pipelines); commands for other nodes, and every command after
    /// the slot moved, are routed as usual. See ``RedisConnectionPool/withPinnedExecution(_:)``.
    public func withPinnedExecution<T>(forKeys keys: [RedisArgument], _ body: () async throws -> T) async throws -> T {
        let address = try await address(for: try HashSlot.common(keys))
        return try await pool(for: address).withPinnedExecution(body)
    }

    /// A new connection of the caller's own to the primary of `keys`' slot (the node's settings,
    /// one connect attempt per command), closed when `body` returns. A MOVED, or a lost node,
    /// from a command on it updates the slot map or asks for a refresh before it reaches the
    /// caller, who calls again to reach the slot's current owner.
    public func withDedicatedConnection<T: Sendable>(
        forKeys keys: [RedisArgument], _ body: (RedisConnection) async throws -> T
    ) async throws -> T {
        // Not waited out like ``withConnection(forKeys:_:)``: its callers (a worker's readers)
        // hold it for a long loop and retry on their own, watching their drain; waiting here
        // (up to the retry window) held a SIGTERM's drain on a dead primary until its deadline.
        let slot = try HashSlot.common(keys)
        let address = try await address(for: slot)
        let connection = try RedisConnection(configuration: configuration.configuration(for: address), logger: logger)
        do {
            return try await connection.closing(after: body)
        } catch let error as RedisError {
            learn(from: error, sentTo: address)
            throw error
        }
    }

    /// Runs `operation` against the primary of `slot`; an error before it calls `enter` (no
    /// connection to be had, no owner of the slot) is retried like a command that did not run,
    /// within ``RedisClusterConfiguration/retryWindow``. Every error also teaches the slot map
    /// (``learn(from:sentTo:)``). Before this, a confirmed order on a cluster whose primary had
    /// just died answered 503 within milliseconds (the lease's refused connect), while the
    /// same command unconfirmed (``send(_:)``) waited for the replica's promotion.
    private func beforeEntering<T: Sendable>(
        slot: HashSlot?, _ operation: (ClusterNodeAddress, _ enter: () -> Void) async throws -> T
    ) async throws -> T {
        let giveUp = ContinuousClock.now + configuration.retryWindow
        var attempt = 0
        while true {
            var entered = false
            var address: ClusterNodeAddress?
            do {
                let target = try await self.address(for: slot)
                address = target
                return try await operation(target) { entered = true }
            } catch let error as RedisError {
                if let address { learn(from: error, sentTo: address) }
                guard !entered, ContinuousClock.now < giveUp else { throw error }
                switch ClusterErrorAction(error, from: address ?? ClusterNodeAddress(host: "", port: 0)) {
                case .nodeUnreachable:
                    counters.nodeRetries.add(1, ordering: .relaxed)
                    try? await refreshTopology(ifOlderThan: configuration.refreshCooldown)
                    try await backOff(attempt: &attempt)
                case .waitAndRetry(let refresh):
                    counters.busyRetries.add(1, ordering: .relaxed)
                    try await backOff(attempt: &attempt)
                    if refresh { try? await refreshTopology(ifOlderThan: configuration.refreshCooldown) }
                default:
                    throw error
                }
            }
        }
    }

    /// What an error from a connection lent to a caller says about the topology: MOVED
    /// updates the map (and asks for a refresh), a node that failed asks for a refresh.
    private func learn(from error: RedisError, sentTo address: ClusterNodeAddress) {
        switch ClusterErrorAction(error, from: address) {
        case .moved(let slot, let target):
            counters.moved.add(1, ordering: .relaxed)
            state.withLock { $0.map.assign(slot, to: target) }
            requestRefresh()
        case .nodeUnreachable, .fail(refresh: true), .waitAndRetry(refresh: true): requestRefresh(after: error)
        default: break
        }
    }

    /// PINGs every primary of the last topology (discovering it first when there is none) on
    /// each node pool's probe connection; nil when all answered, else the first failure, naming
    /// the node.
    public func probe() async -> RedisError? {
        if state.withLock({ $0.map.isEmpty }) {
            do { try await connect() } catch { return RedisError.wrapping(error) }
        }
        let primaries = state.withLock { $0.map.primaries }
        return await withTaskGroup(of: RedisError?.self) { group in
            for address in primaries {
                group.addTask {
                    do {
                        let pool = try self.pool(for: address)
                        guard let error = await pool.probe() else { return nil }
                        return RedisError(error.code, "\(address): \(error.message)", underlying: error)
                    } catch {
                        return RedisError.wrapping(error)
                    }
                }
            }
            for await failure in group { if let failure { return failure } }
            return nil
        }
    }

    /// Sends a keyless command to every primary (FLUSHALL, SCRIPT LOAD, CONFIG SET...) and
    /// returns each one's result.
    public func sendToAllPrimaries<Command: RedisCommand>(_ command: Command) async throws -> [ClusterNodeAddress: Result<Command.Response, RedisError>] {
        if state.withLock({ $0.map.isEmpty }) { try await connect() }
        let primaries = state.withLock { $0.map.primaries }
        return await withTaskGroup(of: (ClusterNodeAddress, Result<Command.Response, RedisError>).self) { group in
            for address in primaries {
                group.addTask {
                    // The result is made before the `return`: a tuple returned from inside
                    // `do { return (address, .success(try await ...)) } catch { ... }` reaches
                    // the group corrupted at -O with Swift 6.3.1 (see `OperationsReader`'s NodeRead).
                    let result: Result<Command.Response, RedisError>
                    do { result = .success(try await self.pool(for: address).send(command)) } catch { result = .failure(RedisError.wrapping(error)) }
                    return (address, result)
                }
            }
            var out: [ClusterNodeAddress: Result<Command.Response, RedisError>] = [:]
            for await (address, result) in group { out[address] = result }
            return out
        }
    }

    /// Sends a keyless read-only command (CLUSTER SHARDS, INFO) to every primary of the last
    /// topology at once and returns the first answer; throws the first error only when none
    /// answers. For questions any node can answer: ``send(_:)`` asks one primary at random, and
    /// a frozen one (SIGSTOP, a stalled host) fails the question after the command timeout,
    /// never retried (it may have run); here the others answer meanwhile. Must not be used for
    /// a command that writes: it runs on several nodes.
    public func sendToFirstAnswering<Command: RedisCommand>(_ command: Command) async throws -> Command.Response {
        if state.withLock({ $0.map.isEmpty }) { try await connect() }
        let primaries = state.withLock { $0.map.primaries }
        guard !primaries.isEmpty else { return try await send(command) }
        let outcome = await withTaskGroup(of: NodeAnswer<Command.Response>.self) { group -> Result<Command.Response, RedisError> in
            for address in primaries {
                group.addTask {
                    // Made before the `return` (see sendToAllPrimaries).
                    let result: Result<Command.Response, RedisError>
                    do { result = .success(try await self.pool(for: address).send(command)) } catch { result = .failure(RedisError.wrapping(error)) }
                    return NodeAnswer(address: address, result: result)
                }
            }
            var firstError: RedisError?
            for await answer in group {
                switch answer.result {
                case .success(let response):
                    group.cancelAll()
                    return .success(response)
                case .failure(let error):
                    learn(from: error, sentTo: answer.address)
                    firstError = firstError ?? error
                }
            }
            return .failure(firstError ?? RedisError(.clusterDown, "no primary answered"))
        }
        return try outcome.get()
    }

    /// One node's answer, as a child task returns it (a struct: see sendToAllPrimaries).
    private struct NodeAnswer<Response: Sendable>: Sendable {
        var address: ClusterNodeAddress
        var result: Result<Response, RedisError>
    }

    public func shutdown() async {
        let pools = state.withLock { s in
            s.closed = true
            defer { s.pools = [:] }
            return Array(s.pools.values)
        }
        for pool in pools { await pool.shutdown() }
    }
}

extension RedisClusterClient: RedisClientProtocol {}
