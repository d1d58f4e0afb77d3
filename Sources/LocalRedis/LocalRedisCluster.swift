import Foundation
import RedisClient

/// A Redis Cluster of local `redis-server` processes, for tests, benchmarks and chaos runs:
/// N primaries with R replicas each, on free loopback ports with explicit cluster bus ports,
/// joined by `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`, optionally
/// over TLS (`tls-cluster yes`, `tls-replication yes`) and with ACL users. Stopped by pid.
public final class LocalRedisCluster: @unchecked Sendable {
    public struct Options: Sendable {
        public var primaries: Int = 3
        public var replicasPerPrimary: Int = 1
        /// `cluster-node-timeout`: how long a silent primary takes to be failed over. Small in tests.
        public var nodeTimeout: Duration = .milliseconds(2000)
        /// TLS on every client port, the cluster bus and replication.
        public var tls: LocalRedisServer.Options.TLS?
        /// The certificate and key nodes present when they connect to each other (cluster bus,
        /// replication) and redis-cli presents: with `tls-cluster yes` Redis always asks the
        /// bus peer for one, so it must be valid for client authentication (`clientAuth`).
        public var tlsClientCertificate: (certificateFile: String, keyFile: String)?
        /// An ACL file for every node. With it, give ``admin``: the user redis-cli and the
        /// replicas (`masteruser`/`masterauth`) authenticate as.
        public var aclFile: String?
        public var admin: RedisConfiguration.Authentication?
        /// Append-only file on every node, and its fsync policy.
        public var appendOnly: Bool = false
        public var appendFsync: String = "everysec"
        /// Where the nodes keep their data: `<directory>/node-<i>`, kept after ``shutdown()``
        /// (for a chaos run's report). Without it, each node has a temporary directory.
        public var directory: String?
        /// Further `--name value` arguments for every node.
        public var extraArguments: [String] = []
        /// Every node in a process group of its own (``LocalRedisServer/Options/ownProcessGroup``).
        public var ownProcessGroup = false
        /// How clients and the other nodes reach each node (by index), when not at its own ports:
        /// a chaos run puts a proxy in front of every port, so that it can cut a node off.
        /// Without it, nodes announce the ports they listen on.
        public var routes: [NodeRoute]?
        /// Called once each node listens (with its index, port and bus port), before the cluster
        /// is created: where the ``routes`` must start forwarding.
        public var nodeStarted: (@Sendable (_ index: Int, _ port: Int, _ busPort: Int) -> Void)?
        /// Node i listens on `firstPort + i` and its cluster bus on `firstPort + nodes + i`
        /// (`ordershop up --cluster --redis-port P`: a range the user chose, where free ports
        /// could be anywhere). nil: free ports. A taken port fails the start (not retried).
        public var firstPort: Int?

        public init() {}
    }

    /// A node's announced ports (`cluster-announce-port`, `cluster-announce-bus-port`, on
    /// 127.0.0.1) and the loopback address its own connections come from (`bind-source-addr`:
    /// cluster bus, replication), so that a proxy can tell the nodes apart.
    public struct NodeRoute: Sendable {
        public var port: Int
        public var busPort: Int
        public var sourceAddress: String

        public init(port: Int, busPort: Int, sourceAddress: String) {
            self.port = port
            self.busPort = busPort
            self.sourceAddress = sourceAddress
        }
    }

    public let options: Options
    /// Every node, primaries first as created (after a failover, roles change: ask the cluster).
    public let nodes: [LocalRedisServer]
    /// Each node's cluster bus port, by index in ``nodes``.
    public let busPorts: [Int]

    /// Starts the nodes, creates the cluster and waits until its state is ok and every replica is attached.
    public init(_ options: Options = Options()) async throws {
        precondition(options.primaries >= 3, "redis-cli --cluster create needs at least 3 primaries")
        precondition(options.routes.map { $0.count == options.primaries * (1 + options.replicasPerPrimary) } ?? true, "one route per node")
        // With TLS a node announces its TLS port (`cluster-announce-tls-port`), not routed here.
        precondition(options.routes == nil || options.tls == nil, "routes are for plain TCP clusters")
        self.options = options
        let count = options.primaries * (1 + options.replicasPerPrimary)
        var nodes: [LocalRedisServer] = []
        var busPorts: [Int] = []
        do {
            for index in 0..<count {
                var node = LocalRedisServer.Options()
                node.port = options.firstPort.map { $0 + index }
                node.tls = options.tls
                node.aclFile = options.aclFile
                node.appendOnly = options.appendOnly
                node.appendFsync = options.appendFsync
                node.ownProcessGroup = options.ownProcessGroup
                if let root = options.directory {
                    node.directory = root + "/node-\(nodes.count)"
                    try FileManager.default.createDirectory(atPath: node.directory!, withIntermediateDirectories: true)
                }
                node.extraArguments = [
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", String(options.nodeTimeout.wholeMilliseconds),
                    // Replicas sync at once (Redis waits 5 s by default to batch diskless syncs).
                    "--repl-diskless-sync-delay", "0",
                ]
                if options.tls != nil { node.extraArguments += ["--tls-cluster", "yes", "--tls-replication", "yes"] }
                if let client = options.tlsClientCertificate {
                    node.extraArguments += ["--tls-client-cert-file", client.certificateFile, "--tls-client-key-file", client.keyFile]
                }
                if let admin = options.admin {
                    node.extraArguments += ["--masteruser", admin.username ?? "default", "--masterauth", admin.password]
                }
                if let route = options.routes?[nodes.count] {
                    node.extraArguments += [
                        "--cluster-announce-ip", "127.0.0.1", "--cluster-announce-port", String(route.port),
                        "--cluster-announce-bus-port", String(route.busPort), "--bind-source-addr", route.sourceAddress,
                    ]
                }
                node.extraArguments += options.extraArguments
                let (server, bus) = try await Self.start(node, busPort: options.firstPort.map { $0 + count + index })
                options.nodeStarted?(nodes.count, server.port, bus)
                nodes.append(server)
                busPorts.append(bus)
            }
        } catch {
            for node in nodes { await node.shutdown() }
            throw error
        }
        self.nodes = nodes
        self.busPorts = busPorts
        do {
            try await create()
            try await waitUntilHealthy()
        } catch {
            await shutdown()
            throw error
        }
    }

    /// Starts one node; on free ports, a port taken between our check and the server's bind
    /// (the client or the bus port) is retried on fresh ones: other processes share this
    /// machine. Given ports are not retried.
    private static func start(_ options: LocalRedisServer.Options, busPort: Int?) async throws -> (LocalRedisServer, busPort: Int) {
        var attempt = 1
        while true {
            // An explicit bus port: port + 10000 can pass 65535 (Redis 7.0 takes --cluster-port).
            let bus = try busPort ?? LocalRedisServer.freePort()
            var withBus = options
            withBus.extraArguments = ["--cluster-port", String(bus)] + options.extraArguments
            do {
                return (try await LocalRedisServer(withBus), bus)
            } catch let error as LocalRedisError where busPort == nil && attempt < 5 && error.description.contains("Address already in use") {
                attempt += 1
            }
        }
    }

    /// `host:port` of every node, as seeds: the port it announces (its route's, when it has one).
    public var addresses: [String] { nodes.indices.map { "127.0.0.1:\(announcedPort(of: $0))" } }

    /// The port clients reach node `index` at: its route's, or its own.
    public func announcedPort(of index: Int) -> Int { options.routes?[index].port ?? nodes[index].port }

    /// A URL naming every node as a seed (`?addr=`), with `cluster=yes`; no credentials.
    public var url: String {
        let scheme = options.tls == nil ? "redis://" : "rediss://"
        return scheme + addresses[0] + "?cluster=yes" + addresses.dropFirst().map { "&addr=\($0)" }.joined()
    }

    /// A client configuration for the cluster: every node a seed, TLS verified against the CA
    /// with the certificate's name `localhost`, the admin user when there is one.
    public var configuration: RedisClusterConfiguration {
        var node = nodes[0].configuration
        node.authentication = options.admin
        let seeds = nodes.indices.map { ClusterNodeAddress(host: "127.0.0.1", port: announcedPort(of: $0)) }
        return RedisClusterConfiguration(seeds: seeds, node: node)
    }

    /// A configuration for one node (for direct commands: CLUSTER, DEBUG, SETSLOT...).
    public func nodeConfiguration(_ index: Int) -> RedisConfiguration {
        var c = nodes[index].configuration
        c.authentication = options.admin
        c.reconnect.retryWindow = .zero
        return c
    }

    /// Arguments redis-cli needs for TLS and authentication.
    public var redisCLIArguments: [String] {
        var a: [String] = []
        if let tls = options.tls {
            a += ["--tls", "--cacert", tls.caFile]
            if let client = options.tlsClientCertificate { a += ["--cert", client.certificateFile, "--key", client.keyFile] }
        }
        if let admin = options.admin {
            if let user = admin.username { a += ["--user", user] }
            a += ["--pass", admin.password, "--no-auth-warning"]
        }
        return a
    }

    private func create() async throws {
        let cli = try ChildProcess.resolve("redis-cli")
        let arguments = redisCLIArguments + ["--cluster", "create"] + addresses
            + ["--cluster-replicas", String(options.replicasPerPrimary), "--cluster-yes"]
        let process = try ChildProcess(cli, arguments, outputFile: nodes[0].directory + "/cluster-create.log")
        guard let status = await process.waitForExit(timeout: .seconds(60)) else {
            await process.stop(signal: SIGKILL)
            throw LocalRedisError("redis-cli --cluster create did not finish within 60 s")
        }
        guard status == 0 else {
            throw LocalRedisError("redis-cli --cluster create failed (\(status)): \(process.output.suffix(800))")
        }
    }

    /// Waits until every node says `cluster_state:ok` and every replica's link to its primary is up.
    /// (CLUSTER SHARDS calls a replica `loading` until its offset moves, up to 10 s on an idle
    /// cluster: INFO replication on the replica itself knows at once.)
    public func waitUntilHealthy(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        let expectedReplicas = options.primaries * options.replicasPerPrimary
        var last = ""
        while ContinuousClock.now < deadline {
            var healthy = true
            var replicas = 0
            for index in nodes.indices where nodes[index].pid != nil {
                do {
                    let connection = try RedisConnection(configuration: nodeConfiguration(index))
                    let state = try await connection.send(CLUSTERINFO())["cluster_state"]
                    let replication = try await connection.send(INFO(section: "replication"))
                    // Every node must also know the replicas as replicas (gossip lags replication).
                    let known = try await connection.send(CLUSTERSHARDS()).flatMap(\.nodes).filter { $0.role == .replica }.count
                    await connection.close()
                    if replication["role"] == "slave" { replicas += 1 }
                    if state != "ok" || known < expectedReplicas || (replication["role"] == "slave" && replication["master_link_status"] != "up") {
                        healthy = false
                        last = "node \(addresses[index]): cluster_state \(state ?? "?"), role \(replication["role"] ?? "?"), link \(replication["master_link_status"] ?? "-"), knows \(known)/\(expectedReplicas) replicas"
                    }
                } catch {
                    healthy = false
                    last = "node \(addresses[index]): \(error)"
                }
                if !healthy { break }
            }
            if healthy && replicas >= expectedReplicas { return }
            if healthy { last = "\(replicas)/\(expectedReplicas) replicas attached" }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw LocalRedisError("the local Redis Cluster did not become healthy within \(timeout): \(last)")
    }

    /// The index in ``nodes`` of the node listening on `port`, or announcing it.
    public func index(ofPort port: Int) -> Int? {
        nodes.firstIndex { $0.port == port } ?? options.routes?.firstIndex { $0.port == port }
    }

    /// Stops every node (SIGTERM by pid) and removes their temporary directories.
    public func shutdown() async {
        await withTaskGroup(of: Void.self) { group in
            for node in nodes { group.addTask { await node.shutdown() } }
        }
    }
}

extension Duration {
    fileprivate var wholeMilliseconds: Int64 {
        let c = components
        return c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
    }
}
