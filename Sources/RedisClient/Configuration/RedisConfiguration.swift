/// Everything needed to connect to one Redis server.
///
/// Build it in code, or from a URL the way redis-py and go-redis users write it
/// (``init(url:)``), or from the environment (``fromEnvironment(_:)``).
public struct RedisConfiguration: Sendable, Equatable {
    /// Where the server listens.
    public enum Endpoint: Sendable, Equatable, CustomStringConvertible {
        /// A TCP host (name or IP literal) and port.
        case tcp(host: String, port: Int)
        /// A unix domain socket path.
        case unix(path: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unix(let path): "unix:\(path)"
            }
        }
    }

    /// TLS, off or on.
    public enum TLS: Sendable, Equatable {
        /// Plain text.
        case disable
        /// TLS with these settings.
        case enable(TLSConfiguration)

        public var isEnabled: Bool {
            if case .enable = self { return true }
            return false
        }
    }

    /// TLS settings. Verification is on unless ``verifyPeer`` is explicitly turned off.
    public struct TLSConfiguration: Sendable, Equatable {
        /// PEM file with the CA certificates to trust. `nil`: the system trust store.
        public var caFile: String?
        /// PEM client certificate (chain) for mutual TLS.
        public var certificateFile: String?
        /// PEM private key of the client certificate.
        public var keyFile: String?
        /// Name for SNI and for the certificate's host name check. `nil`: the endpoint's host.
        /// Set it when connecting by IP address or through a proxy.
        public var serverName: String?
        /// Verify the server's certificate chain and host name. Turning this off is meant for tests only.
        public var verifyPeer: Bool

        public init(
            caFile: String? = nil,
            certificateFile: String? = nil,
            keyFile: String? = nil,
            serverName: String? = nil,
            verifyPeer: Bool = true
        ) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.serverName = serverName
            self.verifyPeer = verifyPeer
        }
    }

    /// Credentials for AUTH: an ACL user and password, or a password only (the `default` user).
    public struct Authentication: Sendable, Equatable, CustomStringConvertible {
        public var username: String?
        public var password: String

        public init(username: String? = nil, password: String) {
            self.username = username
            self.password = password
        }

        /// Never shows the password.
        public var description: String { "Authentication(user: \(username ?? "default"), password: ***)" }
    }

    /// Timeouts. Every blocking call on the connection's thread is bounded by one of them.
    public struct Timeouts: Sendable, Equatable {
        /// Connecting, the TLS handshake, and the AUTH/SELECT/CLIENT SETNAME handshake.
        public var connect: Duration
        /// Waiting for a reply to an ordinary command (or a whole pipeline).
        public var command: Duration
        /// Added to a blocking command's own timeout (`BLOCK ms`) before the client gives up on it.
        public var blockingMargin: Duration

        public init(
            connect: Duration = .seconds(5),
            command: Duration = .seconds(5),
            blockingMargin: Duration = .seconds(2)
        ) {
            self.connect = connect
            self.command = command
            self.blockingMargin = blockingMargin
        }
    }

    /// How a dropped connection is re-established.
    public struct Reconnect: Sendable, Equatable {
        /// The first wait after a failed connect.
        public var initialBackoff: Duration
        /// The longest wait between two connect attempts.
        public var maxBackoff: Duration
        /// How long one command keeps trying to connect before it fails.
        /// Zero: a single attempt.
        public var retryWindow: Duration

        public init(
            initialBackoff: Duration = .milliseconds(50),
            maxBackoff: Duration = .seconds(2),
            retryWindow: Duration = .seconds(5)
        ) {
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.retryWindow = retryWindow
        }

        /// The wait before attempt `attempt` (0-based): exponential with full jitter, capped.
        public func backoff(attempt: Int) -> Duration {
            let base = Double(initialBackoff.components.seconds) + Double(initialBackoff.components.attoseconds) / 1e18
            let cap = Double(maxBackoff.components.seconds) + Double(maxBackoff.components.attoseconds) / 1e18
            let exp = min(cap, base * pow2(min(attempt, 30)))
            // Half fixed, half random: never zero, and spread out so that many clients
            // do not reconnect in lockstep after a restart.
            let seconds = exp / 2 + Double.random(in: 0...(exp / 2))
            return .nanoseconds(Int64(seconds * 1e9))
        }

        private func pow2(_ n: Int) -> Double { Double(1 << n) }
    }

    public var endpoint: Endpoint
    public var tls: TLS
    public var authentication: Authentication?
    /// The database number for SELECT (0 is the default and is not sent).
    public var database: Int
    /// The name given with CLIENT SETNAME, shown by CLIENT LIST.
    public var clientName: String?
    public var timeouts: Timeouts
    public var reconnect: Reconnect

    public init(
        endpoint: Endpoint = .tcp(host: "127.0.0.1", port: 6379),
        tls: TLS = .disable,
        authentication: Authentication? = nil,
        database: Int = 0,
        clientName: String? = nil,
        timeouts: Timeouts = .init(),
        reconnect: Reconnect = .init()
    ) {
        self.endpoint = endpoint
        self.tls = tls
        self.authentication = authentication
        self.database = database
        self.clientName = clientName
        self.timeouts = timeouts
        self.reconnect = reconnect
    }

    /// Redis Cluster: detect it (`auto`, the default: `INFO cluster` says `cluster_enabled:1`),
    /// or force it on or off (`?cluster=yes|no`). See ``RedisClusterClient``.
    public enum ClusterMode: String, Sendable, Equatable {
        case auto, enabled, disabled
    }

    /// Whether to use the cluster client (``connectRedis(_:maximumConnections:logger:)`` decides).
    public var clusterMode: ClusterMode = .auto
    /// Further seed nodes for cluster discovery (`?addr=host2:port2`, repeatable), asked when
    /// ``endpoint`` does not answer. They share the endpoint's TLS, credentials and timeouts.
    public var seeds: [Endpoint] = []
    /// Redis Cluster: how long a command that did not run keeps being retried while the cluster
    /// heals (a failover takes the node timeout plus an election; `?cluster_retry_window=s`).
    public var clusterRetryWindow: Duration = .seconds(15)
    /// One server behind the endpoint (not a cluster): at most this often, a connection a pool
    /// lends asks the server its role (`HELLO`, which least-privilege ACL users have, without
    /// arguments: it changes nothing). When a server seen as the primary answers that it is a
    /// replica now (a failover demoted it), every pooled connection reconnects when it is next
    /// lent, through the host name, as after a `READONLY` reply (``ServerRoleWatch``). Without it a connection that only reads never meets
    /// a `READONLY` and kept reading the demoted node, stale, for as long as it lived (a trial
    /// saw 100 % of a service's reads miss the entity it had just created). nil: never asked.
    /// The cluster client's nodes follow the cluster's map instead.
    public var roleCheckInterval: Duration? = .seconds(1)

    /// A description that is safe to log: it never contains the password.
    public var redactedDescription: String {
        var s = tls.isEnabled ? "rediss://" : (endpoint.isUnix ? "unix://" : "redis://")
        if let auth = authentication { s += (auth.username ?? "") + ":***@" }
        switch endpoint {
        case .tcp: s += endpoint.description
        case .unix(let path): s += path
        }
        if database != 0 { s += "/\(database)" }
        return s
    }
}

extension RedisConfiguration.Endpoint {
    var isUnix: Bool {
        if case .unix = self { return true }
        return false
    }
}

extension Duration {
    /// Whole milliseconds, rounded up, for poll(2).
    var milliseconds: Int {
        let c = components
        return Int(c.seconds) * 1000 + Int((c.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}
