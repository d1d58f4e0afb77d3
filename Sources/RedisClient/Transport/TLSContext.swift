import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// An OpenSSL client context built once from a ``RedisConfiguration/TLSConfiguration`` and
/// shared by every connection of a pool (`SSL_CTX` is reference counted and safe to share
/// for `SSL_new`).
public final class TLSContext: @unchecked Sendable {
    /// OpenSSL writes to its socket with write(2), which raises SIGPIPE on a connection the
    /// server has closed (one that refused our client certificate, say), and SIGPIPE's default
    /// ends the process without a word, before the refusal can be reported. Plain connections
    /// send with MSG_NOSIGNAL; for TLS the process ignores SIGPIPE from its first TLS context on,
    /// as SwiftNIO does for its sockets.
    private static let ignoresBrokenPipes: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    let context: OpaquePointer
    let settings: RedisConfiguration.TLSConfiguration

    /// Loads the CA file (or the system trust store), the client certificate and key.
    public init(_ settings: RedisConfiguration.TLSConfiguration) throws(RedisError) {
        _ = Self.ignoresBrokenPipes
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw RedisError(.tlsConfiguration, "SSL_CTX_new: \(openSSLErrorString())")
        }
        self.context = ctx
        self.settings = settings
        // From here on, deinit frees ctx if a step below throws.
        guard copenssl_ctx_set_min_proto_version(ctx, copenssl_tls1_2_version()) == 1 else {
            throw RedisError(.tlsConfiguration, "cannot require TLS 1.2: \(openSSLErrorString())")
        }
        _ = copenssl_ctx_set_mode_auto_retry(ctx)
        _ = copenssl_ctx_disable_compression(ctx)
        if let caFile = settings.caFile {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                throw RedisError(.tlsConfiguration, "cannot load CA file \(caFile): \(openSSLErrorString())")
            }
        } else if SSL_CTX_set_default_verify_paths(ctx) != 1 {
            throw RedisError(.tlsConfiguration, "cannot load the system trust store: \(openSSLErrorString())")
        }
        switch (settings.certificateFile, settings.keyFile) {
        case (nil, nil):
            break
        case (let cert?, let key?):
            guard SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 else {
                throw RedisError(.tlsConfiguration, "cannot load client certificate \(cert): \(openSSLErrorString())")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 else {
                throw RedisError(.tlsConfiguration, "cannot load client key \(key): \(openSSLErrorString())")
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else {
                throw RedisError(.tlsConfiguration, "client key does not match certificate: \(openSSLErrorString())")
            }
        default:
            throw RedisError(.tlsConfiguration, "mutual TLS needs both a certificate file and a key file")
        }
        SSL_CTX_set_verify(ctx, settings.verifyPeer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
    }

    deinit { SSL_CTX_free(context) }
}

/// Drains OpenSSL's thread-local error queue into one line.
func openSSLErrorString() -> String {
    var messages: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return messages.isEmpty ? "unknown error" : messages.joined(separator: "; ")
}
