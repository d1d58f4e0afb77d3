/// Tells whether a server that dropped a plain-text connection before any reply speaks TLS.
///
/// Why: a Redis TLS port takes a plain client's first command for a broken ClientHello and
/// resets the connection, which looks the same as a server that is restarting. Retried, the
/// process waited for ever with a hint ("if it is a TLS port, use rediss://") where it should
/// stop: no retry fixes a wrong scheme. One TLS handshake on a fresh connection settles it.
enum TLSPortProbe {
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
            // OpenSSL names a TLS peer's refusal "... alert ..." (`sslv3 alert handshake
            // failure`, `tlsv13 alert certificate required`); a plain-text peer gives `wrong
            // version number`, `packet length too long`, a close or a timeout.
            return error.message.contains(" alert ")
        }
    }
}
