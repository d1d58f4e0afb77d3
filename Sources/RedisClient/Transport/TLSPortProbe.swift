import Synchronization

/// Tells whether a server that dropped a plain-text connection before any reply speaks TLS.
///
/// Why: a Redis TLS port takes a plain client's first command for a broken ClientHello and
/// resets the connection, which looks the same as a server that is restarting. Retried, the
/// process waited for ever with a hint ("if it is a TLS port, use rediss://") where it should
/// stop: no retry fixes a wrong scheme. One TLS handshake on a fresh connection settles it.
///
/// Only for an endpoint that never answered this process in RESP: some ports take both (ElastiCache
/// in-transit encryption "preferred", a proxy that routes on the ClientHello), and a failover's
/// drop there must stay the transient failure it is.
enum TLSPortProbe {
    /// Endpoints (`host:port`) that have answered a plain-text connection in RESP.
    private static let answeredRESP = Mutex<Set<String>>([])

    /// Called once per connection, at its first reply.
    static func noteRESPAnswer(from endpoint: RedisConfiguration.Endpoint) {
        let name = "\(endpoint)"
        answeredRESP.withLock { _ = $0.insert(name) }
    }

    static func answeredInRESP(_ endpoint: RedisConfiguration.Endpoint) -> Bool {
        let name = "\(endpoint)"
        return answeredRESP.withLock { $0.contains(name) }
    }

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
