/// An error from the Redis client or from the server.
///
/// Match on ``code`` to react to a kind of failure:
///
/// ```swift
/// do { try await pool.send(XGroupCreate(stream: "s", group: "g")) }
/// catch let error as RedisError where error.code == .busyGroup { /* already there */ }
/// ```
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as a value that can be matched.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The name of the code, e.g. `NOGROUP` for server errors or `connectionRefused`.
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        // MARK: Errors the server replied with (the first word of the error reply).

        /// A generic `ERR` reply.
        public static let err = Code("ERR")
        /// The stream or its consumer group does not exist.
        public static let noGroup = Code("NOGROUP")
        /// The consumer group already exists.
        public static let busyGroup = Code("BUSYGROUP")
        /// EVALSHA named a script the server does not have cached.
        public static let noScript = Code("NOSCRIPT")
        /// The ACL user may not run this command or touch this key.
        public static let noPermission = Code("NOPERM")
        /// AUTH failed: wrong user name or password.
        public static let wrongPassword = Code("WRONGPASS")
        /// The server requires authentication.
        public static let noAuth = Code("NOAUTH")
        /// Redis Cluster: the key lives on another node.
        public static let moved = Code("MOVED")
        /// Redis Cluster: the key is being migrated; ask another node once.
        public static let ask = Code("ASK")
        /// Redis Cluster: a multi-key command's keys are in different slots (refused before
        /// sending by the cluster client, or by the server).
        public static let crossSlot = Code("CROSSSLOT")
        /// Redis Cluster: the keys are being migrated and not all are on this node yet.
        public static let tryAgain = Code("TRYAGAIN")
        /// Redis Cluster: the cluster is down (a slot has no serving primary).
        public static let clusterDown = Code("CLUSTERDOWN")
        /// The primary of this replica is down (replica-serve-stale-data no).
        public static let masterDown = Code("MASTERDOWN")
        /// The server is loading its data set (after a restart).
        public static let loading = Code("LOADING")
        /// The server is busy running a script.
        public static let busy = Code("BUSY")
        /// An operation against a key holding the wrong kind of value.
        public static let wrongType = Code("WRONGTYPE")
        /// A transaction was discarded because of an earlier error.
        public static let execAbort = Code("EXECABORT")
        /// A read-only replica refused a write.
        public static let readOnly = Code("READONLY")
        /// The server is out of memory.
        public static let outOfMemory = Code("OOM")
        /// Any other server error prefix.
        public static func server(_ prefix: String) -> Code {
            switch prefix {
            case "ERR": .err
            case "NOGROUP": .noGroup
            case "BUSYGROUP": .busyGroup
            case "NOSCRIPT": .noScript
            case "NOPERM": .noPermission
            case "WRONGPASS": .wrongPassword
            case "NOAUTH": .noAuth
            case "MOVED": .moved
            case "ASK": .ask
            case "CROSSSLOT": .crossSlot
            case "TRYAGAIN": .tryAgain
            case "CLUSTERDOWN": .clusterDown
            case "MASTERDOWN": .masterDown
            case "LOADING": .loading
            case "BUSY": .busy
            case "WRONGTYPE": .wrongType
            case "EXECABORT": .execAbort
            case "READONLY": .readOnly
            case "OOM": .outOfMemory
            default: Code(prefix)
            }
        }

        // MARK: Errors on our side of the connection.

        /// The server refused the connection (nothing listens there).
        public static let connectionRefused = Code("connectionRefused")
        /// The host name did not resolve.
        public static let hostNotFound = Code("hostNotFound")
        /// Connecting took longer than the connect timeout.
        public static let connectTimeout = Code("connectTimeout")
        /// A reply did not arrive within the command timeout.
        public static let timeout = Code("timeout")
        /// The connection dropped before the command was written: it did not run.
        public static let connectionClosed = Code("connectionClosed")
        /// The connection dropped after the command was (maybe partly) written and before its
        /// reply: it may or may not have run. The client never re-sends it.
        public static let outcomeUnknown = Code("outcomeUnknown")
        /// The server refused the set-up of a new connection with a plain `ERR`: AUTH with a
        /// password where it has none, SELECT of a database it has not got. No command ran.
        public static let handshakeRefused = Code("handshakeRefused")
        /// The server's certificate failed verification (OpenSSL's reason is in the message).
        public static let tlsVerifyFailed = Code("tlsVerifyFailed")
        /// The server's certificate does not name the host we connected to.
        public static let tlsHostnameMismatch = Code("tlsHostnameMismatch")
        /// The TLS handshake failed for another reason (protocol version, alert, ...).
        public static let tlsHandshakeFailed = Code("tlsHandshakeFailed")
        /// The TLS configuration could not be loaded (CA file, certificate, key).
        public static let tlsConfiguration = Code("tlsConfiguration")
        /// The server sent bytes that are not valid RESP.
        public static let protocolError = Code("protocolError")
        /// A reply did not have the shape the command expects.
        public static let unexpectedReply = Code("unexpectedReply")
        /// The configuration (for example a URL) is invalid.
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// The task waiting for the command was cancelled.
        public static let cancelled = Code("cancelled")
        /// A socket call failed (the message names it and errno).
        public static let io = Code("io")
        /// The connection pool is shut down.
        public static let poolClosed = Code("poolClosed")
        /// A transaction was aborted because a WATCHed key changed.
        public static let transactionAborted = Code("transactionAborted")

        /// True for errors the server sent as a reply (as opposed to transport errors).
        public var isServerError: Bool { name.first?.isUppercase == true }
    }

    /// What went wrong.
    public var code: Code
    /// A readable message (for server errors, the whole error reply).
    public var message: String
    /// The underlying error, if another error caused this one.
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    /// Makes an error from a server error reply such as `NOGROUP No such key ...`.
    public init(serverReply: String) {
        let prefix = serverReply.prefix { $0 != " " }
        self.init(.server(String(prefix)), serverReply)
    }

    /// True when the connection is known to be unusable after this error.
    public var closesConnection: Bool {
        switch code {
        case .connectionRefused, .hostNotFound, .connectTimeout, .timeout, .connectionClosed,
            .outcomeUnknown, .tlsVerifyFailed, .tlsHostnameMismatch, .tlsHandshakeFailed,
            .protocolError, .io, .cancelled:
            true
        default:
            false
        }
    }

    /// An error of a server that is away, restarting or being replaced, worth another attempt
    /// later (a connection's reconnect window, a `status --watch`); not one of a wrong setting
    /// (certificate, password, ACL), which no retry fixes.
    public var isTransient: Bool {
        switch code {
        case .connectionRefused, .connectTimeout, .connectionClosed, .hostNotFound, .io, .loading, .readOnly, .timeout: true
        default: false
        }
    }

    /// A refusal by the ACL: NOPERM, or a script's command refused, which Redis 7.0 answers as
    /// an ERR ("The user executing the script can't run this command" or "... can't access at
    /// least one of the keys ...") and Redis 7.2+ and Valkey as "ACL failure in script: No
    /// permissions to ...".
    public var isACLRefusal: Bool {
        code == .noPermission || code.isServerError && Self.isACLRefusal(message)
    }

    /// Whether a server's error text is an ACL refusal of a script's command (``isACLRefusal``).
    public static func isACLRefusal(_ message: String) -> Bool {
        let text = message.lowercased()
        return ["can't access at least one of the keys", "the user executing the script", "acl failure in script", "no permissions to"]
            .contains { text.contains($0) }
    }

    /// True when the command certainly did not run, so that a caller may retry it.
    public var commandDidNotRun: Bool {
        switch code {
        case .connectionRefused, .hostNotFound, .connectTimeout, .connectionClosed,
            .tlsVerifyFailed, .tlsHostnameMismatch, .tlsHandshakeFailed, .tlsConfiguration,
            .poolClosed, .invalidConfiguration:
            true
        default:
            false
        }
    }

    /// True for replies that tell a cluster client to send the command elsewhere or later:
    /// MOVED, ASK, TRYAGAIN, CLUSTERDOWN, MASTERDOWN. The command did not run.
    public var isClusterRedirect: Bool {
        switch code {
        case .moved, .ask, .tryAgain, .clusterDown, .masterDown: true
        default: false
        }
    }

    /// True for "ERR no such key": the command's key (a stream for XINFO) does not exist.
    public var isNoSuchKey: Bool { message.lowercased().contains("no such key") }

    public var description: String {
        if code.isServerError { return message }
        return "\(code.name): \(message)"
    }

    public static func == (lhs: RedisError, rhs: RedisError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }
}
