import Logging

/// The synchronous heart of a connection: socket, codec and handshake.
///
/// Every method may block (socket I/O bounded by deadlines) and is called only from the
/// connection's own serial dispatch queue, never from the Swift concurrency pool.
final class ConnectionCore {
    let configuration: RedisConfiguration
    let tlsContext: TLSContext?
    private let interrupter: Interrupter
    /// Shared by the connections of one pool: see ``ServerRoleWatch``.
    private let roleWatch: ServerRoleWatch?
    /// The watch's generation when this connection connected.
    private var connectedGeneration: UInt64 = 0
    /// The role the handshake found, and when it connected.
    private var connectedRole: String?
    private var connectedAt: ContinuousClock.Instant = .now
    /// The server has sent a whole reply on this connection (so it speaks RESP).
    private var answered = false
    private var stream: ByteStream?
    private var decoder = RESPDecoder()
    private var encoder = RESPEncoder(reservingCapacity: 4096)
    private let readBuffer: UnsafeMutableRawBufferPointer
    private static let readBufferSize = 64 * 1024

    /// Server facts learned at connect time.
    private(set) var tlsDetails: TLSDetails?

    init(configuration: RedisConfiguration, tlsContext: TLSContext?, interrupter: Interrupter, roleWatch: ServerRoleWatch? = nil) {
        self.configuration = configuration
        self.tlsContext = tlsContext
        self.interrupter = interrupter
        self.roleWatch = roleWatch
        self.readBuffer = .allocate(byteCount: Self.readBufferSize, alignment: 16)
    }

    deinit {
        disconnect()
        readBuffer.deallocate()
    }

    var isConnected: Bool { stream != nil }

    /// Connects and runs the handshake (AUTH, SELECT, CLIENT SETNAME) unless a live connection
    /// exists. A connection the server closed while idle is detected here and replaced, so that
    /// the next command is not written into a dead socket.
    ///
    /// `checkServer`: the first command of a pool's lease; a connection made before a failover
    /// was seen reconnects (``isOnCurrentServer()``). Only then, never between the commands of
    /// one lease: a caller's WATCH ... EXEC on a lent connection must not move to another
    /// session halfway (the WATCH would be gone and EXEC run anyway).
    func ensureConnected(checkServer: Bool = false) throws(RedisError) {
        if let stream {
            if stream.isReusable(), !checkServer || isOnCurrentServer() { return }
            disconnect()
        }
        let deadline = Deadline(after: configuration.timeouts.connect)
        let socket = try SocketStream.connect(to: configuration.endpoint, deadline: deadline)
        let newStream: ByteStream
        if let tlsContext {
            guard case .tcp(let host, _) = configuration.endpoint else {
                throw RedisError(.invalidConfiguration, "TLS needs a TCP endpoint")
            }
            newStream = try TLSStream(socket: socket, context: tlsContext, host: host, deadline: deadline)
        } else {
            newStream = socket
        }
        stream = newStream
        interrupter.attach(newStream.fileDescriptor)
        decoder = RESPDecoder()
        answered = false
        tlsDetails = newStream.tlsDetails
        do {
            try handshake(deadline: deadline)
        } catch {
            disconnect()
            throw error
        }
        connectedGeneration = roleWatch?.generation ?? 0
        connectedAt = .now
    }

    /// False when this connection should reconnect through the endpoint's name: another one
    /// met a demoted server since it connected, or the role check that is due now finds that
    /// its server is a replica where a primary was (``ServerRoleWatch``).
    private func isOnCurrentServer() -> Bool {
        guard let roleWatch else { return true }
        if roleWatch.generation != connectedGeneration { return false }
        // Connected to a replica while the name still led to the demoted node: tried again (not
        // moving the others) once it is older than the check interval, so that it does not wait
        // until it is the one connection that wins a check.
        if let role = connectedRole, role != "master", roleWatch.leavesReplica(connectedAt: connectedAt) { return false }
        guard roleWatch.claimCheck() else { return true }
        let reply: RESPValue
        do throws(RedisError) {
            reply = try roundTrip([ServerRoleWatch.query], deadline: Deadline(after: configuration.timeouts.connect)).first ?? .null
        } catch {
            return false
        }
        guard let role = roleOrDisable(reply) else { return true }
        return !roleWatch.observed(role: role)
    }

    private func handshake(deadline: Deadline) throws(RedisError) {
        var commands: [[RedisArgument]] = []
        if let auth = configuration.authentication {
            if let user = auth.username {
                commands.append(["AUTH", RedisArgument(user), RedisArgument(auth.password)])
            } else {
                commands.append(["AUTH", RedisArgument(auth.password)])
            }
        }
        if configuration.database != 0 { commands.append(["SELECT", RedisArgument(configuration.database)]) }
        if let name = configuration.clientName { commands.append(["CLIENT", "SETNAME", RedisArgument(name)]) }
        // Last, after AUTH: what the server is, for the role watch (no round trip of its own
        // where there is a handshake anyway).
        let asksRole = roleWatch?.asksRole ?? false
        if asksRole { commands.append(ServerRoleWatch.query) }
        guard !commands.isEmpty else { return }
        var replies = try roundTrip(commands, deadline: deadline, phase: .handshake)
        let roleReply = asksRole ? replies.popLast() : nil
        for reply in replies {
            guard case .error(let message) = reply else { continue }
            let refusal = RedisError(serverReply: message)
            // A plain ERR here is the server's refusal of this process's settings (its
            // password, its database), not of a command: said so, where an operations
            // command printed Redis's bare "ERR DB index is out of range" (a trial).
            throw refusal.code == .err ? RedisError(.handshakeRefused, message) : refusal
        }
        if let roleReply, let role = roleOrDisable(roleReply) {
            roleWatch?.connected(role: role)
            connectedRole = role
        }
    }

    /// The `role` of a HELLO reply ("master" or "replica"); nil, and the watch off, when the
    /// server refused it (HELLO without arguments came with Redis 6.2) or did not say.
    private func roleOrDisable(_ reply: RESPValue) -> String? {
        if let role = ServerRoleWatch.role(inHELLOReply: reply) { return role }
        roleWatch?.disable()
        return nil
    }

    enum Phase { case handshake, command }

    /// Writes every command in one write and reads exactly one reply per command, in order.
    /// Error replies are returned as `.error` values, not thrown.
    func roundTrip(_ commands: [[RedisArgument]], deadline: Deadline, phase: Phase = .command) throws(RedisError) -> [RESPValue] {
        try roundTrip(commands, deadline: deadline, phase: phase) { cursor in cursor.readValue() }
    }

    /// The same, each reply read in place by `read` (which must not throw for a reply it
    /// cannot decode: a throw here is taken for a broken connection).
    func roundTrip<Reply>(
        _ commands: [[RedisArgument]], deadline: Deadline, phase: Phase = .command,
        read: (inout RESPReplyCursor) throws(RedisError) -> Reply
    ) throws(RedisError) -> [Reply] {
        try roundTrip(count: commands.count, deadline: deadline, phase: phase, encode: { encoder in
            for command in commands { encoder.encode(command) }
        }, read: read)
    }

    /// The same for `count` commands that `encode` writes into the connection's buffer.
    func roundTrip<Reply>(
        count: Int, deadline: Deadline, phase: Phase = .command,
        encode: (inout RESPEncoder) -> Void,
        read: (inout RESPReplyCursor) throws(RedisError) -> Reply
    ) throws(RedisError) -> [Reply] {
        guard let stream else { throw RedisError(.connectionClosed, "not connected") }
        encoder.removeAll()
        encode(&encoder)
        var written = 0
        do throws(RedisError) {
            // withUnsafeBytes rethrows untyped errors; carry ours out by hand.
            var writeError: RedisError?
            encoder.buffer.withUnsafeBytes { bytes in
                do throws(RedisError) { try stream.writeAll(bytes, deadline: deadline, written: &written) } catch { writeError = error }
            }
            if let writeError { throw writeError }
            var metReadOnly = false
            // A READONLY reply: the server we reach is a replica now (its primary was demoted
            // by a failover, and the endpoint's name, or the proxy before it, may already lead
            // to the new primary). The command did not run; the socket is dropped once the
            // replies are read, so that the next command connects anew, resolving the host name
            // again, as redis-py and go-redis do. Without it a pooled connection would keep
            // talking to the demoted node for as long as it lives.
            defer {
                if metReadOnly {
                    disconnect()
                    roleWatch?.demoted()
                }
            }
            var replies: [Reply] = []
            replies.reserveCapacity(count)
            var waited = false
            while replies.count < count {
                if let reply = try decoder.next({ (cursor) throws(RedisError) -> Reply in
                    if cursor.isError(startingWith: "READONLY") { metReadOnly = true }
                    return try read(&cursor)
                }) {
                    replies.append(reply)
                    if !answered {
                        answered = true
                        if tlsContext == nil { TLSPortProbe.notePlainTextAnswer() }
                    }
                    continue
                }
                if !waited {
                    // Hot path: the reply to what we just wrote is rarely there yet.
                    try stream.waitUntilReadable(deadline: deadline)
                    waited = true
                }
                let n = try stream.read(into: readBuffer, deadline: deadline)
                try decoder.feed(UnsafeRawBufferPointer(rebasing: readBuffer[0..<n]))
            }
            return replies
        } catch {
            disconnect()
            throw classify(error, written: written, phase: phase)
        }
    }

    /// After a failure mid-command, says whether the command may have run.
    private func classify(_ error: RedisError, written: Int, phase: Phase) -> RedisError {
        if error.code == .protocolError, !answered {
            // Its first answer is not RESP: no Redis listens there (`status` at an HTTP port
            // said "outcomeUnknown ... it may or may not have run (Protocol error, got "<" as
            // reply type byte)"), so no command of ours ran. A TLS record (an alert, 0x15, or
            // a handshake, 0x16) is a TLS port.
            let tls = error.message.contains(#""\x15""#) || error.message.contains(#""\x16""#)
            let hint = tls ? "it answers in TLS: use rediss://" : "it is no Redis server (check the URL's port)"
            return RedisError(
                .protocolError, "the server at \(configuration.endpoint) does not answer in RESP: \(hint); no command ran (\(error.message))", underlying: error)
        }
        if error.code == .connectionClosed, !answered, written > 0, tlsContext == nil, !interrupter.isInterrupted, TLSPortProbe.mayJudge,
            case .tcp(let host, let port) = configuration.endpoint, TLSPortProbe.speaksTLS(host: host, port: port),
            !interrupter.isInterrupted
        {
            // Dropped before any reply, no server has answered this process in plain text yet,
            // and a TLS handshake there succeeds: a TLS port, which read our command as a broken
            // ClientHello. Not transient: retrying waited for ever. (Cancelled meanwhile: the
            // cancellation is what the caller learns.)
            return RedisError(
                .protocolError,
                "the server at \(configuration.endpoint) answers in TLS: use rediss://; it dropped the plain-text connection before any reply, so no command ran",
                underlying: error)
        }
        if phase == .handshake {
            // AUTH, HELLO or SETNAME of a new connection: no command of the caller's went out,
            // whatever the failure (a timeout here said "outcome unknown" to callers that
            // then told their clients a command may have been applied).
            if error.code == .timeout || error.code == .outcomeUnknown {
                return RedisError(.connectTimeout, "the connection's handshake got no answer in time (\(error.message)); no command was sent", underlying: error)
            }
            if error.code == .io {
                return RedisError(.connectionClosed, "the connection's handshake failed (\(error.message)); no command was sent", underlying: error)
            }
            return error
        }
        // The server refused the TLS session before its first reply (``TLSStream``): it read
        // none of our commands.
        if error.code == .tlsHandshakeFailed { return error }
        if interrupter.consumeInterrupted() {
            return RedisError(.cancelled, "cancelled while waiting for the reply; the command's outcome is unknown", underlying: error)
        }
        if written == 0 {
            return RedisError(.connectionClosed, "connection lost before the command was sent: \(error.message)", underlying: error)
        }
        if error.code == .timeout {
            // The server named: a frozen primary left `status` saying only "no reply within the timeout".
            return RedisError(.timeout, "no reply from \(configuration.endpoint) within the timeout; the command's outcome is unknown", underlying: error)
        }
        return RedisError(
            .outcomeUnknown, "connection lost after the command was sent; it may or may not have run (\(error.message))",
            underlying: error)
    }

    func disconnect() {
        guard let stream else { return }
        interrupter.detach()
        stream.close()
        self.stream = nil
        tlsDetails = nil
        connectedRole = nil
    }
}
