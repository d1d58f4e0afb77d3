import Synchronization

/// Tells whether a server that dropped a plain-text connection before any reply speaks TLS.
///
/// Why: a Redis TLS port takes a plain client's first command for a broken ClientHello and
/// resets the connection, which looks the same as a server that is restarting. Retried, the
/// process waited for ever with a hint ("if it is a TLS port, use rediss://") where it should
/// stop: no retry fixes a wrong scheme. One TLS handshake on a fresh connection settles it.
///
/// Only while no server has answered this process in RESP over plain text: some ports take both
/// (ElastiCache in-transit encryption "preferred", a proxy that routes on the ClientHello), and
/// a failover's drop there must stay the transient failure it is. Per process, not per endpoint:
/// a cluster's promoted replica, or a node first reached after a slot moved, is a new endpoint
/// of the same deployment (a review).
enum TLSPortProbe {
    /// Whether a server has answered a plain-text connection of this process in RESP.
    private static let answeredInPlainText = Atomic<Bool>(false)

    /// Called at a plain-text connection's first reply.
    static func notePlainTextAnswer() {
        answeredInPlainText.store(true, ordering: .relaxed)
    }

    /// Whether the verdict may still be given.
    static var mayJudge: Bool { !answeredInPlainText.load(ordering: .relaxed) }

    /// How long the probe may take (connect and handshake): a local TLS handshake takes a few
    /// milliseconds; a server that is not TLS answers garbage or nothing, and then it is not.
    static let timeout: Duration = .seconds(1)

    /// True when a TLS handshake with `host:port` completes, or the server ends it with a TLS
    /// alert (one that wants a client certificate, say): either way it speaks TLS. The
    /// certificate is not checked (nothing is sent over it; the answer only names the scheme).
    static func speaksTLS(host: String, port: Int) -> Bool {
        let deadline = Deadline(after: timeout)
        let context: TLSContext
        do throws(RedisError) {
            context = try TLSContext(RedisConfiguration.TLSConfiguration(verifyPeer: false))
        } catch {
            return false
        }
        let socket: SocketStream
        do throws(RedisError) {
            socket = try SocketStream.connect(to: .tcp(host: host, port: port), deadline: deadline)
        } catch {
            return false
        }
        do throws(RedisError) {
            let stream = try TLSStream(socket: socket, context: context, host: host, deadline: deadline)
            stream.close()
            return true
        } catch {
            socket.close()
            // A certificate came (OpenSSL records its chain's verification even unasked, and a
            // TLS 1.2 server that wants a client certificate refuses after sending its own), or
            // OpenSSL names a TLS peer's refusal "... alert ..." (`sslv3 alert handshake
            // failure`, `tlsv13 alert certificate required`): TLS. A plain-text peer gives
            // `wrong version number`, `packet length too long`, a close or a timeout.
            return error.code == .tlsVerifyFailed || error.code == .tlsHostnameMismatch || error.message.contains(" alert ")
        }
    }
}
