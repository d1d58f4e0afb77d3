import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// TLS over a non-blocking ``SocketStream``. OpenSSL's WANT_READ/WANT_WRITE are turned into
/// poll(2) waits bounded by the deadline, on the connection's own thread.
final class TLSStream: ByteStream {
    private let socket: SocketStream
    private let ssl: OpaquePointer
    private var closed = false
    private(set) var tlsDetails: TLSDetails?
    /// Whether we offer a client certificate, and whether the server ever sent application data:
    /// with TLS 1.3 a server that requires a client certificate refuses only after our side of
    /// the handshake is done, so its refusal surfaces at the first read.
    private let offersClientCertificate: Bool
    private var receivedData = false

    var fileDescriptor: Int32 { socket.fileDescriptor }

    /// Performs the handshake and verifies the certificate chain and host name.
    init(socket: SocketStream, context: TLSContext, host: String, deadline: Deadline) throws(RedisError) {
        guard let ssl = SSL_new(context.context) else {
            throw RedisError(.tlsHandshakeFailed, "SSL_new: \(openSSLErrorString())")
        }
        self.socket = socket
        self.ssl = ssl
        self.offersClientCertificate = context.settings.certificateFile != nil
        let name = context.settings.serverName ?? host
        let nameIsIP = Self.isIPAddress(name)
        if !nameIsIP { _ = copenssl_set_tlsext_host_name(ssl, name) }
        if context.settings.verifyPeer {
            // The host name check is part of chain verification, so a mismatch fails the
            // handshake with X509_V_ERR_HOSTNAME_MISMATCH (or IP_ADDRESS_MISMATCH).
            let param = SSL_get0_param(ssl)
            if nameIsIP {
                X509_VERIFY_PARAM_set1_ip_asc(param, name)
            } else {
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                SSL_set1_host(ssl, name)
            }
        }
        SSL_set_fd(ssl, socket.fileDescriptor)
        ERR_clear_error()
        while true {
            let rc = SSL_connect(ssl)
            if rc == 1 { break }
            let err = SSL_get_error(ssl, rc)
            switch err {
            case SSL_ERROR_WANT_READ:
                try Self.waitForHandshake(socket, Int16(POLLIN), deadline)
            case SSL_ERROR_WANT_WRITE:
                try Self.waitForHandshake(socket, Int16(POLLOUT), deadline)
            default:
                throw handshakeError(err, name: name)
            }
        }
        let version = String(cString: SSL_get_version(ssl))
        let cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "unknown"
        tlsDetails = TLSDetails(protocolVersion: version, cipher: cipher)
    }

    deinit {
        close()
        SSL_free(ssl)
    }

    /// Waits for the socket during the handshake. The TCP connection is up by now, so a server
    /// that never answers is not a slow connect but a failed handshake: typically a plain-text
    /// redis-server, which waits for the end of a line the ClientHello never sends. Reported as
    /// `.tlsHandshakeFailed` (it was `.connectTimeout`, which hid the cause and was retried).
    private static func waitForHandshake(_ socket: SocketStream, _ events: Int16, _ deadline: Deadline) throws(RedisError) {
        do {
            try socket.wait(for: events, deadline: deadline, timeoutCode: .connectTimeout)
        } catch where error.code == .connectTimeout {
            throw RedisError(
                .tlsHandshakeFailed,
                "TLS handshake timed out: the server accepted the connection but sent no TLS reply (is it a plain-text port?)",
                underlying: error)
        }
    }

    private func handshakeError(_ err: Int32, name: String) -> RedisError {
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            let reason = String(cString: X509_verify_cert_error_string(verify))
            if verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH {
                return RedisError(.tlsHostnameMismatch, "certificate does not match '\(name)': \(reason)")
            }
            return RedisError(.tlsVerifyFailed, "TLS verify failed: \(reason)")
        }
        let detail = openSSLErrorString()
        if err == SSL_ERROR_SYSCALL && detail == "unknown error" {
            return RedisError(.tlsHandshakeFailed, "TLS handshake failed: connection closed by the server (is it a TLS port?)")
        }
        return RedisError(.tlsHandshakeFailed, "TLS handshake failed: \(detail)")
    }

    func writeAll(_ bytes: UnsafeRawBufferPointer, deadline: Deadline, written: inout Int) throws(RedisError) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            ERR_clear_error()
            let chunk = Int32(clamping: bytes.count - offset)
            let n = SSL_write(ssl, base + offset, chunk)
            if n > 0 {
                offset += Int(n)
                written += Int(n)
                continue
            }
            try waitOrThrow(SSL_get_error(ssl, n), deadline: deadline, call: "write")
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline) throws(RedisError) -> Int {
        while true {
            ERR_clear_error()
            let n = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
            if n > 0 {
                receivedData = true
                return Int(n)
            }
            try waitOrThrow(SSL_get_error(ssl, n), deadline: deadline, call: "read")
        }
    }

    func waitUntilReadable(deadline: Deadline) throws(RedisError) {
        // Bytes OpenSSL already decrypted are not visible to poll(2).
        if SSL_pending(ssl) > 0 { return }
        try socket.wait(for: Int16(POLLIN), deadline: deadline)
    }

    /// For a close before the server's first reply when we offer no client certificate.
    private var missingCertificateHint: String {
        receivedData || offersClientCertificate
            ? "" : " before its first reply; if it requires a client certificate (mutual TLS), configure one (REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE)"
    }

    private func waitOrThrow(_ err: Int32, deadline: Deadline, call: String) throws(RedisError) {
        switch err {
        case SSL_ERROR_WANT_READ:
            try socket.wait(for: Int16(POLLIN), deadline: deadline)
        case SSL_ERROR_WANT_WRITE:
            try socket.wait(for: Int16(POLLOUT), deadline: deadline)
        case SSL_ERROR_ZERO_RETURN:
            throw RedisError(.connectionClosed, "server closed the TLS connection" + missingCertificateHint)
        case SSL_ERROR_SYSCALL:
            let e = errno
            if e == 0 || e == ECONNRESET || e == EPIPE {
                // A server that refused the session sent an alert and closed: a write then fails
                // with EPIPE while the alert waits unread. Its reason is worth more than "closed".
                if !receivedData, let alert = unreadAlert() { throw refusal(alert) }
                throw RedisError(.connectionClosed, "server closed the connection" + missingCertificateHint)
            }
            throw errnoError(.io, "TLS \(call)", e)
        default:
            let detail = openSSLErrorString()
            if detail.contains("certificate required") { throw certificateRequired(detail) }
            // An alert from the server before its first reply: it refused this TLS session after
            // the handshake (TLS 1.3 checks a client certificate then: "tlsv1 alert unknown ca"
            // for one from a CA it does not trust). Not worth waiting for; as an I/O error it
            // was retried for ever by `serve` and `work` ("waiting for Redis").
            if !receivedData, detail.contains(" alert ") { throw refusal(detail) }
            throw RedisError(.io, "TLS \(call): \(detail)")
        }
    }

    /// The server requires a client certificate (its alert, as OpenSSL reported it).
    private func certificateRequired(_ detail: String) -> RedisError {
        RedisError(
            .tlsHandshakeFailed,
            "TLS refused: the server requires a client certificate (mutual TLS) and "
                + (offersClientCertificate ? "did not accept ours" : "none is configured (REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE, or ssl_certfile and ssl_keyfile)")
                + " (OpenSSL: \(detail))")
    }

    /// The server's refusal of the session, from the alert OpenSSL reported. The alert that a
    /// client certificate is required reaches here too when our write met the closed socket
    /// before the alert was read (EPIPE: a test run on a loaded machine took this path and said
    /// only "TLS refused by the server: ... certificate required").
    private func refusal(_ detail: String) -> RedisError {
        if detail.contains("certificate required") { return certificateRequired(detail) }
        return RedisError(
            .tlsHandshakeFailed,
            "TLS refused by the server: \(detail)"
                + (offersClientCertificate && (detail.contains("cert") || detail.contains(" ca"))
                    ? " (it did not accept our client certificate: REDIS_TLS_CERT_FILE or ssl_certfile)" : ""))
    }

    /// An alert the server sent that is still unread (the socket is non-blocking: nothing else
    /// is waited for), as OpenSSL reports it; nil when there is none.
    private func unreadAlert() -> String? {
        var byte: UInt8 = 0
        ERR_clear_error()
        let n = SSL_read(ssl, &byte, 1)
        guard n <= 0, SSL_get_error(ssl, n) == SSL_ERROR_SSL else { return nil }
        let detail = openSSLErrorString()
        return detail.contains(" alert ") ? detail : nil
    }

    func isReusable() -> Bool {
        guard !closed else { return false }
        var pfd = pollfd(fd: socket.fileDescriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 0) > 0 else { return SSL_pending(ssl) == 0 }
        // TLS 1.3 servers send session tickets after the handshake, so a readable socket may
        // hold only TLS records with no application data. Let OpenSSL look.
        var byte: UInt8 = 0
        ERR_clear_error()
        let n = SSL_peek(ssl, &byte, 1)
        if n > 0 { return false }  // unexpected application data
        return SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ
    }

    func close() {
        guard !closed else { return }
        closed = true
        // No close_notify round trip: the socket may be dead, and a blocking shutdown must not hang.
        SSL_set_quiet_shutdown(ssl, 1)
        socket.close()
    }

    private static func isIPAddress(_ name: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1
    }
}
