import Logging
import Synchronization

/// Routing: the primary of a command's slot, redirects (MOVED, ASK) and waiting out a
/// healing cluster while a command certainly did not run.
extension RedisClusterClient {
    /// Runs `operation` against the slot's primary, following redirects and waiting out a
    /// healing cluster while the command certainly did not run.
    func routed<T: Sendable>(
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
                var action = ClusterErrorAction(error, from: address)
                // A node's pool retired by a topology refresh (the node left) fails the commands
                // queued in it as not sent: they go to the slot's owner of the moment. Not when
                // the client itself is shut down.
                if error.code == .poolClosed, !state.withLock({ $0.closed }) { action = .nodeUnreachable }
                switch action {
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
                    // The window bounds these waits, not the redirect budget: during a slot's
                    // migration a command on several keys meets ASK at the source and TRYAGAIN
                    // at the target until it ends, and counting each ASK gave up after five
                    // (~0.8 s) on a migration of seconds.
                    redirects = 0
                    try await backOff(attempt: &attempt)
                    if refresh { try? await refreshTopology(ifOlderThan: configuration.refreshCooldown) }
                case .nodeUnreachable:
                    guard ContinuousClock.now < giveUp else { throw error }
                    counters.nodeRetries.add(1, ordering: .relaxed)
                    logger.debug("redis cluster node unreachable, refreshing", metadata: ["node": "\(address)", "error": "\(error)"])
                    try? await refreshTopology(ifOlderThan: configuration.refreshCooldown)
                    try await backOff(attempt: &attempt)
                case .fail(let refresh):
                    // A timeout or a cut connection: the node may be frozen, its replica promoted
                    // a node timeout later; keep looking until then.
                    if refresh { requestRefresh(after: error) }
                    throw error
                }
            }
        }
    }

    static func tooManyRedirects(_ error: RedisError) -> RedisError {
        RedisError(error.code, "\(error.message) (gave up after too many redirects; the command did not run)", underlying: error)
    }

    func backOff(attempt: inout Int) async throws {
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
    func address(for slot: HashSlot?) async throws -> ClusterNodeAddress {
        try await ensureTopology()
        return try state.withLock { s in try Self.owner(of: slot, in: s.map) }
    }

    /// The indices of the commands (those without a result yet) grouped by the primary of
    /// their slot, looked up under one lock; discovers the topology first when there is none.
    func addresses(for slots: [HashSlot?], skipping settled: [Bool]) async throws -> [ClusterNodeAddress: [Int]] {
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
    func ensureTopology() async throws {
        guard state.withLock({ $0.map.isEmpty }) else { return }
        try await refreshTopology(ifOlderThan: nil)
        if let error = state.withLock({ $0.map.isEmpty ? $0.lastRefreshError : nil }) { throw error }
    }

    /// The primary that owns `slot` in `map`, or any primary for a keyless command.
    static func owner(of slot: HashSlot?, in map: SlotMap) throws(RedisError) -> ClusterNodeAddress {
        let found = if let slot { map.primary(for: slot) } else { map.primaries.randomElement() }
        guard let found else {
            throw RedisError(.clusterDown, "CLUSTERDOWN no primary serves slot \(slot.map(String.init(describing:)) ?? "-") in the last topology")
        }
        return found
    }

    func pool(for address: ClusterNodeAddress) throws(RedisError) -> RedisConnectionPool {
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
    /// node does not have cached is loaded there and the call sent again (it did not run).
    static func run<Command: RedisCommand>(_ command: Command, on connection: RedisConnection, asking: Bool) async throws -> Command.Response {
        func once() async throws -> Command.Response {
            guard asking else { return try await connection.send(command) }
            let (asked, reply) = try await connection.pipeline(ASKING(), command)
            _ = try asked.get()
            return try reply.get()
        }
        guard let call = command as? EVALSHA else { return try await once() }
        return try await call.script.calling(once, loadingWith: { _ = try await connection.send(SCRIPTLOAD(call.script)) })
    }

    static func name(of command: some RedisCommand) -> String {
        command.arguments.first.map { String(decoding: $0.bytes, as: UTF8.self) } ?? "command"
    }
}
