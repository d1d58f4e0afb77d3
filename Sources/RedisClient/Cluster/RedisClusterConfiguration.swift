/// How a ``RedisClusterClient`` finds and talks to the nodes of a Redis Cluster.
public struct RedisClusterConfiguration: Sendable {
    /// Nodes to ask for the topology at start (and when every known node is gone).
    public var seeds: [ClusterNodeAddress]
    /// Everything but the address, for every node: TLS (and mTLS), ACL user and password,
    /// timeouts, client name. The database must be 0 (a cluster has only one).
    public var node: RedisConfiguration
    /// Connections per primary.
    public var connectionsPerNode: Int = 8
    /// How often ``RedisClusterClient/run()`` refreshes the topology without being asked.
    public var refreshInterval: Duration = .seconds(30)
    /// A requested refresh (after MOVED, a dead node) waits this long after the previous one,
    /// so that a burst of redirects makes one refresh.
    public var refreshCooldown: Duration = .milliseconds(200)
    /// How many MOVED/ASK redirects one command follows before giving up.
    public var maxRedirects: Int = 5
    /// How long a command that certainly did not run keeps being retried while the cluster heals
    /// (TRYAGAIN, CLUSTERDOWN, MASTERDOWN, LOADING, a refused connection to a dead primary).
    /// A failover takes the cluster's node timeout plus an election: keep this above both.
    public var retryWindow: Duration = .seconds(15)
    /// How many nodes one refresh asks at once for their view (their majority wins).
    public var discoveryNodes: Int = 3
    /// How long a refresh waits for one node's view (`CLUSTER SHARDS`, answered in
    /// microseconds by a node that works), at most: a frozen node (SIGSTOP, a hung VM) still
    /// accepts connections, and with the command timeout (5 s) every refresh that asked it
    /// waited that long, so a user-style trial's shop reached the promoted replica only ~15 s
    /// after the election.
    public var discoveryTimeout: Duration = .seconds(1)
    /// After a command to a node timed out or was cut off (the node may be frozen or gone),
    /// ``RedisClusterClient/run()`` refreshes every ``suspectRefreshInterval`` for this long,
    /// not only every ``refreshInterval``: the replica's promotion comes a node timeout later,
    /// and no further command may fail to ask for it. Keep it above the cluster's node timeout
    /// plus an election.
    public var suspectWindow: Duration = .seconds(30)
    public var suspectRefreshInterval: Duration = .seconds(1)

    public init(seeds: [ClusterNodeAddress], node: RedisConfiguration) {
        self.seeds = seeds
        self.node = node
    }

    /// The cluster named by a client configuration: its endpoint and ``RedisConfiguration/seeds``
    /// are the seeds, the rest applies to every node.
    public init(_ configuration: RedisConfiguration) throws(RedisError) {
        var seeds: [ClusterNodeAddress] = []
        for endpoint in [configuration.endpoint] + configuration.seeds {
            guard case .tcp(let host, let port) = endpoint else {
                throw RedisError(.invalidConfiguration, "a Redis Cluster is reached over TCP; \(endpoint) is a unix socket")
            }
            seeds.append(ClusterNodeAddress(host: host, port: port))
        }
        guard configuration.database == 0 else {
            throw RedisError(.invalidConfiguration, "a Redis Cluster has only database 0; the URL selects \(configuration.database)")
        }
        self.init(seeds: seeds, node: configuration)
        retryWindow = configuration.clusterRetryWindow
    }

    /// The configuration for one node. A node announced by IP address is verified against the
    /// seed's host name (managed services put their DNS name, not node IPs, in certificates);
    /// an explicit ``RedisConfiguration/TLSConfiguration/serverName`` wins.
    public func configuration(for address: ClusterNodeAddress) -> RedisConfiguration {
        var c = node
        c.endpoint = .tcp(host: address.host, port: address.port)
        c.seeds = []
        // One attempt per connect: the cluster client decides where to retry (another node, after a refresh).
        c.reconnect.retryWindow = .zero
        // A node's address is fixed; a demoted node's slots are followed through the map.
        c.roleCheckInterval = nil
        if case .enable(var tls) = c.tls, tls.serverName == nil, Self.isIPAddress(address.host),
            let seedName = seeds.first(where: { !Self.isIPAddress($0.host) })?.host
        {
            tls.serverName = seedName
            c.tls = .enable(tls)
        }
        return c
    }

    static func isIPAddress(_ host: String) -> Bool {
        if host.contains(":") { return true }  // IPv6
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }
}
