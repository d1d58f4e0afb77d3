import Logging
import Synchronization

/// Topology: discovering the slot map from several nodes, collapsed refreshes, and the
/// requests for one that ``RedisClusterClient/run()`` waits for.
extension RedisClusterClient {
    /// Asks for a refresh by ``run()`` after `error` from a node: one that says the node may be
    /// frozen or gone (a command that timed out or was cut off) also makes ``run()`` refresh
    /// often for a while (``RedisClusterConfiguration/suspectWindow``). Never waits.
    func requestRefresh(after error: RedisError) {
        requestRefresh(suspect: Self.suspectsNode(error))
    }

    /// A command to the node timed out or its connection was cut: the node may be frozen (a
    /// SIGSTOP, a hung VM, a partition), and its replica promoted a node timeout later.
    static func suspectsNode(_ error: RedisError) -> Bool {
        [.timeout, .outcomeUnknown, .io].contains(error.code)
    }

    /// Asks for a refresh by ``run()`` (MOVED, a node that stopped answering). Never waits.
    /// `suspect`: see ``requestRefresh(after:)``.
    func requestRefresh(suspect: Bool = false) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if suspect { s.suspectUntil = .now + configuration.suspectWindow }
            if let w = s.runWaiter {
                s.runWaiter = nil
                return w
            }
            s.refreshRequested = true
            return nil
        }
        waiter?.resume()
    }

    /// How long ``run()`` waits for a request before it refreshes anyway.
    func nextRefreshInterval() -> Duration {
        state.withLock { s in
            guard let until = s.suspectUntil else { return configuration.refreshInterval }
            guard ContinuousClock.now < until else {
                s.suspectUntil = nil
                return configuration.refreshInterval
            }
            // Not below the cooldown: a refresh asked sooner is skipped, and the loop would spin.
            return min(max(configuration.suspectRefreshInterval, configuration.refreshCooldown), configuration.refreshInterval)
        }
    }

    /// Returns after `interval` or at a refresh request, whichever comes first; throws when cancelled.
    func waitForRefreshRequest(upTo interval: Duration) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await Task.sleep(for: interval) }
            group.addTask { await self.nextRefreshRequest() }
            _ = try await group.next()
            group.cancelAll()
        }
        try Task.checkCancellation()
    }

    func nextRefreshRequest() async {
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
                for (address, pool) in s.pools where !map.primaries.contains(address) && !map.liveNodes.contains(address) {
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
            // Without a map yet (the first discovery) there is nothing to keep: the caller (a
            // command, or a process at start) reports the failure itself, once.
            if state.withLock({ !$0.map.isEmpty }) {
                logger.warning("redis cluster topology refresh failed; keeping the last one", metadata: ["error": "\(error)"])
            }
            throw error
        }
    }

    /// Asks up to ``RedisClusterConfiguration/discoveryNodes`` nodes at a time (known primaries,
    /// then replicas, then the seeds) for their view; the view most of them share wins.
    func discover() async throws -> SlotMap {
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
                    // Its words, without the client's code name (an operator reads this line).
                    failures.append("\(address): \(error.message)")
                }
            }
            // A seed that is a standalone server, found by the first discovery, is a
            // configuration that names one: `isClusterEnabled` refuses it, and so does the client,
            // though another seed led to a cluster (a review: services took such a URL as the
            // cluster's while the workers given the same URL refused it), or the others did not
            // answer (a trial: a service given such a server and a dead seed waited for ever).
            if known.isEmpty, let standalone = answers.first(where: { $0.1.failureCode == .invalidConfiguration }) {
                throw RedisError(
                    .invalidConfiguration,
                    "\(standalone.0) answers as a standalone server (cluster support disabled), but it is named as a Redis Cluster seed: name the cluster's nodes only")
            }
            if let best = views.max(by: { $0.votes < $1.votes }) { return best.map }
        }
        // The first node's error code (a wrong CA fails every node alike), every node's reason.
        // A view asked for and not given in time is no command of the caller's that may have
        // run: a connect timeout (it did not run), not `timeout` (outcome unknown, a 503 "may
        // have been applied" from the shop).
        var code = firstError?.code ?? .clusterDown
        if code == .timeout || code == .outcomeUnknown { code = .connectTimeout }
        throw RedisError(
            code,
            "no Redis Cluster node answered CLUSTER SHARDS/SLOTS: " + failures.joined(separator: "; "), underlying: firstError)
    }

    func askTopology(of address: ClusterNodeAddress) async -> Result<SlotMap, RedisError> {
        do {
            var config = configuration.configuration(for: address)
            config.timeouts.connect = min(config.timeouts.connect, .seconds(2))
            config.timeouts.command = min(config.timeouts.command, configuration.discoveryTimeout)
            let connection = try RedisConnection(configuration: config, logger: logger)
            let shards: [ClusterShardDescription]
            do {
                shards = try await Self.shards(on: connection)
            } catch {
                // Closed whatever the answer (a failed one was left to deinit before).
                await connection.close()
                throw error
            }
            await connection.close()
            return .success(SlotMap(shards: shards) { node in self.address(of: node, answeredBy: address) })
        } catch let error as RedisError where error.message.contains("cluster support disabled") {
            // A standalone server: no waiting makes it a cluster node (see `discover`).
            return .failure(RedisError(.invalidConfiguration, error.message + " (not a Redis Cluster node)", underlying: error))
        } catch {
            return .failure(RedisError.wrapping(error))
        }
    }

    /// `CLUSTER SHARDS`, or `CLUSTER SLOTS` before Redis 7.0.
    private static func shards(on connection: RedisConnection) async throws -> [ClusterShardDescription] {
        do {
            return try await connection.send(CLUSTERSHARDS())
        } catch let error as RedisError where CLUSTERSHARDS.isUnsupported(error) {
            return try await connection.send(CLUSTERSLOTS())
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

extension Result where Failure == RedisError {
    /// The error's code, nil on success.
    fileprivate var failureCode: RedisError.Code? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
