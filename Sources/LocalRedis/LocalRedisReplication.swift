import Foundation
import RedisClient
import Synchronization

/// A primary and its replicas, local `redis-server` processes without cluster mode: the shape
/// of ElastiCache "cluster mode disabled", Azure Standard or a Sentinel-less primary/replica
/// pair. ``promote(_:)`` is a failover as those services do it: the replica becomes the primary
/// and the old primary (if alive) its replica. The one endpoint name that moves with the
/// primary is, locally, a ``FaultProxy`` retargeted by the test. Stopped by pid.
public final class LocalRedisReplication: Sendable {
    /// Every server, the first started as the primary (roles change: see ``primaryIndex``).
    public let servers: [LocalRedisServer]
    private let primary = Mutex(0)

    /// The index in ``servers`` of the current primary.
    public var primaryIndex: Int { primary.withLock { $0 } }

    /// Starts a primary and `replicas` replicas of it and waits until every replica is in sync.
    public init(replicas: Int = 1, options: LocalRedisServer.Options = LocalRedisServer.Options()) async throws {
        precondition(replicas >= 1)
        var servers: [LocalRedisServer] = []
        // Each server keeps its data in a directory of its own (under the given one, if any).
        func serverOptions(_ index: Int) -> LocalRedisServer.Options {
            var o = options
            o.extraArguments += Self.replicationArguments
            if let directory = options.directory { o.directory = directory + "/server-\(index)" }
            return o
        }
        do {
            servers.append(try await LocalRedisServer(serverOptions(0)))
            for index in 1...replicas {
                var replicaOptions = serverOptions(index)
                replicaOptions.extraArguments += ["--replicaof", "127.0.0.1", String(servers[0].port)]
                servers.append(try await LocalRedisServer(replicaOptions))
            }
        } catch {
            for server in servers { await server.shutdown() }
            throw error
        }
        self.servers = servers
        try await waitUntilReplicasAttached()
    }

    /// Replicas sync at once (Redis waits 5 s by default to batch diskless syncs), and a
    /// promoted replica's former primary may rejoin it by partial sync.
    private static let replicationArguments = ["--repl-diskless-sync-delay", "0"]

    /// A client configuration for server `index`.
    public func configuration(_ index: Int) -> RedisConfiguration { servers[index].configuration }

    /// Asks server `index` for `INFO replication`.
    public func replicationInfo(_ index: Int) async throws -> [String: String] {
        try await send(INFO(section: "replication"), to: index)
    }

    /// Waits until the current primary sees every other live server as a replica online that
    /// has acknowledged the primary's replication offset as it was when the wait began (under
    /// load the offset moves on: waiting for equality never ends).
    public func waitUntilReplicasAttached(timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        let expected = servers.indices.filter { $0 != primaryIndex && servers[$0].pid != nil }.count
        var target: Int?
        while true {
            if let info = try? await replicationInfo(primaryIndex), let offset = info["master_repl_offset"].flatMap(Int.init) {
                let goal = target ?? offset
                target = goal
                let caughtUp = info.filter { $0.key.hasPrefix("slave") && $0.value.contains("state=online") }.values.filter { value in
                    value.split(separator: ",").contains { field in
                        field.hasPrefix("offset=") && (Int(field.dropFirst("offset=".count)) ?? -1) >= goal
                    }
                }
                if caughtUp.count >= expected { return }
            }
            guard ContinuousClock.now < deadline else {
                throw LocalRedisError("replicas not in sync with server \(primaryIndex) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Makes server `index` the primary (`REPLICAOF NO ONE`), then every other live server its
    /// replica (`REPLICAOF 127.0.0.1 port`): a failover. What the old primary had and the
    /// promoted one had not yet received is lost, as in any asynchronous failover.
    ///
    /// - Parameter link: the port the others replicate through (a proxy in front of the new
    ///   primary, to cut the replication link on purpose); nil: straight to it.
    public func promote(_ index: Int, replicatingThrough link: Int? = nil) async throws {
        try await replicaOf(nil, on: index)
        primary.withLock { $0 = index }
        for other in servers.indices where other != index && servers[other].pid != nil {
            try await replicaOf(link ?? servers[index].port, on: other)
        }
    }

    /// Makes server `index` replicate from `port` (the primary's, or a link in front of it).
    public func follow(_ port: Int, on index: Int) async throws {
        try await replicaOf(port, on: index)
    }

    /// Starts server `index` again after it was killed, as a replica of the current primary,
    /// and waits until it is in sync (its own data, older than the primary's, is replaced).
    public func restart(_ index: Int, replicatingThrough link: Int? = nil) async throws {
        try await servers[index].start()
        try await replicaOf(link ?? servers[primaryIndex].port, on: index)
        try await waitUntilReplicasAttached()
    }

    private func replicaOf(_ port: Int?, on index: Int) async throws {
        let arguments: [RedisArgument] = port.map { ["REPLICAOF", "127.0.0.1", RedisArgument($0)] } ?? ["REPLICAOF", "NO", "ONE"]
        _ = try await send(RawCommand(arguments), to: index)
    }

    /// Sends one command to server `index` on a connection of its own, closed afterwards.
    public func send<Command: RedisCommand>(_ command: Command, to index: Int) async throws -> Command.Response {
        let connection = try RedisConnection(configuration: Self.once(configuration(index)))
        do {
            let response = try await connection.send(command)
            await connection.close()
            return response
        } catch {
            await connection.close()
            throw error
        }
    }

    /// One connect attempt, short timeouts: a test asking a server must not wait out a window.
    private static func once(_ configuration: RedisConfiguration) -> RedisConfiguration {
        var c = configuration
        c.reconnect.retryWindow = .zero
        c.timeouts.connect = .seconds(1)
        c.timeouts.command = .seconds(5)
        return c
    }

    /// Stops every server and removes their temporary directories.
    public func shutdown() async {
        for server in servers { await server.shutdown() }
    }
}
