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
    private let logger: Logger
    private let counters = ClusterCounters()

    private struct State {
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
        var closed = false
    }
    private let state = Mutex(State())

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
            try await waitForRefreshRequest(upTo: configuration.refreshInterval)
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
            try await pool.withConnection { connection in try await Self.run(command, on: connection, asking: asking) }
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
                return NodeReplies(address: address, indices: indices, replies: .success(try await pool.withConnection { try await $0.decodedPipeline(share) }))
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
                    requestRefresh()
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
    /// A MOVED from a command on it updates the slot map before it reaches the caller.
    public func withConnection<T: Sendable>(
        forKeys keys: [RedisArgument], _ body: (RedisConnection) async throws -> T
    ) async throws -> T {
        let slot = try HashSlot.common(keys)
        let address = try await address(for: slot)
        do {
            return try await pool(for: address).withConnection(body)
        } catch let error as RedisError {
            learn(from: error, sentTo: address)
            throw error
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

    /// What an error from a connection lent to a caller says about the topology: MOVED
    /// updates the map (and asks for a refresh), a node that failed asks for a refresh.
    private func learn(from error: RedisError, sentTo address: ClusterNodeAddress) {
        switch ClusterErrorAction(error, from: address) {
        case .moved(let slot, let target):
            counters.moved.add(1, ordering: .relaxed)
            state.withLock { $0.map.assign(slot, to: target) }
            requestRefresh()
        case .nodeUnreachable, .fail(refresh: true), .waitAndRetry(refresh: true): requestRefresh()
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
                    do { return (address, .success(try await self.pool(for: address).send(command))) } catch {
                        return (address, .failure(RedisError.wrapping(error)))
                    }
                }
            }
            var out: [ClusterNodeAddress: Result<Command.Response, RedisError>] = [:]
            for await (address, result) in group { out[address] = result }
            return out
        }
    }

    public func shutdown() async {
        let pools = state.withLock { s in
            s.closed = true
            defer { s.pools = [:] }
            return Array(s.pools.values)
        }
        for pool in pools { await pool.shutdown() }
    }

    // MARK: - Routing

    /// Runs `operation` against the slot's primary, following redirects and waiting out a
    /// healing cluster while the command certainly did not run.
    private func routed<T: Sendable>(
        slot: HashSlot?, _ operation: (RedisConnectionPool, _ asking: Bool) async throws -> T
    ) async throws -> T {
        let giveUp = ContinuousClock.now + configuration.retryWindow
        var redirect: (address: ClusterNodeAddress, asking: Bool)?
        var redirects = 0
        var attempt = 0
        while true {
            var address = ClusterNodeAddress(host: "", port: 0)
            do {
                if let redirect { address = redirect.address } else { address = try await self.address(for: slot) }
                return try await operation(try pool(for: address), redirect?.asking ?? false)
            } catch let error as RedisError {
                redirect = nil
                switch ClusterErrorAction(error, from: address) {
                case .moved(let movedSlot, let target):
                    counters.moved.add(1, ordering: .relaxed)
                    state.withLock { $0.map.assign(movedSlot, to: target) }
                    requestRefresh()
                    redirects += 1
                    guard redirects <= configuration.maxRedirects else { throw Self.tooManyRedirects(error) }
                    redirect = (target, false)
                case .ask(let target):
                    counters.ask.add(1, ordering: .relaxed)
                    redirects += 1
                    guard redirects <= configuration.maxRedirects else { throw Self.tooManyRedirects(error) }
                    redirect = (target, true)
                case .waitAndRetry(let refresh):
                    guard ContinuousClock.now < giveUp else { throw error }
                    counters.busyRetries.add(1, ordering: .relaxed)
                    try await backOff(attempt: &attempt)
                    if refresh { try? await refreshTopology(ifOlderThan: configuration.refreshCooldown) }
                case .nodeUnreachable:
                    guard ContinuousClock.now < giveUp else { throw error }
                    counters.nodeRetries.add(1, ordering: .relaxed)
                    logger.debug("redis cluster node unreachable, refreshing", metadata: ["node": "\(address)", "error": "\(error)"])
                    try? await refreshTopology(ifOlderThan: configuration.refreshCooldown)
                    try await backOff(attempt: &attempt)
                case .fail(let refresh):
                    if refresh { requestRefresh() }
                    throw error
                }
            }
        }
    }

    private static func tooManyRedirects(_ error: RedisError) -> RedisError {
        RedisError(error.code, "\(error.message) (gave up after too many redirects; the command did not run)", underlying: error)
    }

    private func backOff(attempt: inout Int) async throws {
        // 25 ms doubling to 400 ms: a failover is noticed within ~0.4 s of the election.
        let delay = Duration.milliseconds(25 << min(attempt, 4))
        attempt += 1
        do {
            try await Task.sleep(for: delay)
        } catch {
            throw RedisError(.cancelled, "cancelled while waiting for the cluster to heal; the command did not run")
        }
    }

    /// The primary for `slot` (any primary for a keyless command), discovering the topology
    /// first when there is none. No owner: CLUSTERDOWN (retried by the caller).
    private func address(for slot: HashSlot?) async throws -> ClusterNodeAddress {
        try await ensureTopology()
        return try state.withLock { s in try Self.owner(of: slot, in: s.map) }
    }

    /// The indices of the commands (those without a result yet) grouped by the primary of
    /// their slot, looked up under one lock; discovers the topology first when there is none.
    private func addresses(for slots: [HashSlot?], skipping settled: [Bool]) async throws -> [ClusterNodeAddress: [Int]] {
        try await ensureTopology()
        return try state.withLock { s in
            var byNode: [ClusterNodeAddress: [Int]] = [:]
            for index in slots.indices where !settled[index] {
                byNode[try Self.owner(of: slots[index], in: s.map), default: []].append(index)
            }
            return byNode
        }
    }

    /// Discovers the topology when there is none yet; throws why when it cannot.
    private func ensureTopology() async throws {
        guard state.withLock({ $0.map.isEmpty }) else { return }
        try await refreshTopology(ifOlderThan: nil)
        if let error = state.withLock({ $0.map.isEmpty ? $0.lastRefreshError : nil }) { throw error }
    }

    /// The primary that owns `slot` in `map`, or any primary for a keyless command.
    private static func owner(of slot: HashSlot?, in map: SlotMap) throws(RedisError) -> ClusterNodeAddress {
        let found = if let slot { map.primary(for: slot) } else { map.primaries.randomElement() }
        guard let found else {
            throw RedisError(.clusterDown, "CLUSTERDOWN no primary serves slot \(slot.map(String.init(describing:)) ?? "-") in the last topology")
        }
        return found
    }

    private func pool(for address: ClusterNodeAddress) throws(RedisError) -> RedisConnectionPool {
        let (existing, closed) = state.withLock { ($0.pools[address], $0.closed) }
        if closed { throw RedisError(.poolClosed, "the cluster client is shut down") }
        if let existing { return existing }
        let pool = try RedisConnectionPool(
            configuration: configuration.configuration(for: address), maximumConnections: configuration.connectionsPerNode, logger: logger)
        return state.withLock { s in
            if let raced = s.pools[address] { return raced }
            s.pools[address] = pool
            return pool
        }
    }

    /// One command on one connection: with ASKING first after an ASK redirect; a script the
    /// node does not have cached is loaded there and the call sent once more (it did not run).
    private static func run<Command: RedisCommand>(_ command: Command, on connection: RedisConnection, asking: Bool) async throws -> Command.Response {
        func once() async throws -> Command.Response {
            guard asking else { return try await connection.send(command) }
            let (asked, reply) = try await connection.pipeline(ASKING(), command)
            _ = try asked.get()
            return try reply.get()
        }
        do {
            return try await once()
        } catch let error as RedisError where error.code == .noScript {
            guard let call = command as? EVALSHA else { throw error }
            try await connection.send(SCRIPTLOAD(call.script))
            return try await once()
        }
    }

    static func name(of command: some RedisCommand) -> String {
        command.arguments.first.map { String(decoding: $0.bytes, as: UTF8.self) } ?? "command"
    }

    // MARK: - Topology

    /// Asks for a refresh by ``run()`` (MOVED, a node that stopped answering). Never waits.
    func requestRefresh() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.runWaiter {
                s.runWaiter = nil
                return w
            }
            s.refreshRequested = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns after `interval` or at a refresh request, whichever comes first; throws when cancelled.
    private func waitForRefreshRequest(upTo interval: Duration) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await Task.sleep(for: interval) }
            group.addTask { await self.nextRefreshRequest() }
            _ = try await group.next()
            group.cancelAll()
        }
        try Task.checkCancellation()
    }

    private func nextRefreshRequest() async {
        state.withLock { $0.runWaiterCancelled = false }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s in
                    if s.refreshRequested || s.runWaiterCancelled {
                        s.refreshRequested = false
                        return true
                    }
                    s.runWaiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s in
                s.runWaiterCancelled = true
                defer { s.runWaiter = nil }
                return s.runWaiter
            }
            waiter?.resume()
        }
    }

    /// Discovers the topology, unless one discovery completed less than `age` ago. Callers that
    /// come while a discovery runs wait for it instead of starting another.
    func refreshTopology(ifOlderThan age: Duration?) async throws {
        enum Role { case discover, wait, skip }
        let role: Role = state.withLock { s in
            if s.refreshing { return .wait }
            if let age, let last = s.lastRefresh, ContinuousClock.now - last < age { return .skip }
            s.refreshing = true
            return .discover
        }
        switch role {
        case .skip: return
        case .wait:
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = state.withLock { s in
                    if !s.refreshing { return true }
                    s.refreshWaiters.append(continuation)
                    return false
                }
                if done { continuation.resume() }
            }
            return
        case .discover:
            break
        }
        let outcome: Result<SlotMap, RedisError>
        do { outcome = .success(try await discover()) } catch { outcome = .failure(RedisError.wrapping(error)) }
        var retired: [RedisConnectionPool] = []
        let waiters = state.withLock { s in
            s.refreshing = false
            s.lastRefresh = .now
            switch outcome {
            case .success(let map):
                s.map = map
                s.lastRefreshError = nil
                for (address, pool) in s.pools where !map.primaries.contains(address) {
                    retired.append(pool)
                    s.pools[address] = nil
                }
            case .failure(let error):
                s.lastRefreshError = error
            }
            defer { s.refreshWaiters = [] }
            return s.refreshWaiters
        }
        for waiter in waiters { waiter.resume() }
        // A retired pool's leased connections close when their command returns.
        for pool in retired { await pool.shutdown() }
        switch outcome {
        case .success: counters.refreshes.add(1, ordering: .relaxed)
        case .failure(let error):
            logger.warning("redis cluster topology refresh failed; keeping the last one", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// Asks up to ``RedisClusterConfiguration/discoveryNodes`` nodes at a time (known primaries,
    /// then replicas, then the seeds) for their view; the view most of them share wins.
    private func discover() async throws -> SlotMap {
        let (known, replicas) = state.withLock { s in
            (s.map.primaries, s.map.shards.flatMap { $0.nodes.filter { $0.role == .replica } }.compactMap { self.address(of: $0) })
        }
        var candidates: [ClusterNodeAddress] = []
        for address in known.shuffled() + replicas.shuffled() + configuration.seeds where !candidates.contains(address) {
            candidates.append(address)
        }
        var failures: [String] = []
        var firstError: RedisError?
        var start = 0
        while start < candidates.count {
            let batch = Array(candidates[start..<min(start + max(configuration.discoveryNodes, 1), candidates.count)])
            start += batch.count
            let answers = await withTaskGroup(of: (ClusterNodeAddress, Result<SlotMap, RedisError>).self) { group in
                for address in batch {
                    group.addTask { (address, await self.askTopology(of: address)) }
                }
                var all: [(ClusterNodeAddress, Result<SlotMap, RedisError>)] = []
                for await answer in group { all.append(answer) }
                return all
            }
            var views: [(map: SlotMap, votes: Int)] = []
            for (address, answer) in answers {
                switch answer {
                case .success(let map) where !map.isEmpty:
                    if let i = views.firstIndex(where: { $0.map == map }) { views[i].votes += 1 } else { views.append((map, 1)) }
                case .success:
                    failures.append("\(address): it serves no slots")
                case .failure(let error):
                    firstError = firstError ?? error
                    failures.append("\(address): \(error)")
                }
            }
            if let best = views.max(by: { $0.votes < $1.votes }) { return best.map }
        }
        // The first node's error code (a wrong CA fails every node alike), every node's reason.
        throw RedisError(
            firstError?.code ?? .clusterDown,
            "no Redis Cluster node answered CLUSTER SHARDS/SLOTS: " + failures.joined(separator: "; "), underlying: firstError)
    }

    private func askTopology(of address: ClusterNodeAddress) async -> Result<SlotMap, RedisError> {
        do {
            var config = configuration.configuration(for: address)
            config.timeouts.connect = min(config.timeouts.connect, .seconds(2))
            let connection = try RedisConnection(configuration: config, logger: logger)
            let shards: [ClusterShardDescription]
            do {
                shards = try await connection.send(CLUSTERSHARDS())
            } catch let error as RedisError where CLUSTERSHARDS.isUnsupported(error) {
                shards = try await connection.send(CLUSTERSLOTS())  // before Redis 7.0
            }
            await connection.close()
            return .success(SlotMap(shards: shards) { node in self.address(of: node, answeredBy: address) })
        } catch {
            return .failure(RedisError.wrapping(error))
        }
    }

    /// Where to connect to a node: its announced host name when there is one, else its IP
    /// (empty: the host of the node that described it); the TLS port over TLS.
    public func address(of node: ClusterNodeDescription, answeredBy: ClusterNodeAddress? = nil) -> ClusterNodeAddress? {
        let port = configuration.node.tls.isEnabled ? (node.tlsPort ?? node.port) : (node.port ?? node.tlsPort)
        guard let port else { return nil }
        let host = node.hostname ?? (node.ip.isEmpty ? answeredBy?.host : node.ip)
        guard let host, !host.isEmpty else { return nil }
        return ClusterNodeAddress(host: host, port: port)
    }
}

extension RedisClusterClient: RedisClientProtocol {}
