import Foundation
import LocalRedis
@testable import RedisClient
import TestSupport
import Testing

/// TLS against redis-server with certificates made at test time (TestCertificates).
@Suite struct TLSTests {
    /// A TLS configuration for `server`, trusting `caFile`.
    private func tlsConfiguration(
        _ server: LocalRedisServer, caFile: String, serverName: String? = "localhost",
        certificateFile: String? = nil, keyFile: String? = nil
    ) -> RedisConfiguration {
        var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: server.port))
        config.tls = .enable(.init(caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, serverName: serverName))
        config.reconnect.retryWindow = .zero
        return config
    }

    @Test func verifiedTLS() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS() }) { server in
            let connection = try RedisConnection(configuration: tlsConfiguration(server, caFile: certs.caFile))
            #expect(try await connection.send(PING()) == "PONG")
            try await connection.send(["SET", "k", "over tls"])
            #expect(try await connection.send(GET("k")) == Array("over tls".utf8))
            let details = try #require(await connection.tlsDetails)
            #expect(details.protocolVersion.hasPrefix("TLSv1."))
            #expect(!details.cipher.isEmpty && details.cipher != "unknown")

            // No server name: the certificate is checked against the IP address we dialled.
            let byIP = try RedisConnection(configuration: tlsConfiguration(server, caFile: certs.caFile, serverName: nil))
            #expect(try await byIP.send(PING()) == "PONG")

            // The URL form, as users write it.
            let fromURL = try RedisConnection(
                configuration: RedisConfiguration(url: "rediss://127.0.0.1:\(server.port)/0?ssl_ca_certs=\(certs.caFile)"))
            #expect(try await fromURL.send(GET("k")) == Array("over tls".utf8))
        }
    }

    @Test func mutualTLS() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS(requireClientCertificates: true) }) { server in
            let withCertificate = try RedisConnection(
                configuration: tlsConfiguration(
                    server, caFile: certs.caFile, certificateFile: certs.clientCertificateFile, keyFile: certs.clientKeyFile))
            #expect(try await withCertificate.send(PING()) == "PONG")
            let clients = try await withCertificate.clientList()
            #expect(clients.count == 1)

            // Without a client certificate the server refuses the connection. With TLS 1.3 the
            // client's side of the handshake completes first, so the refusal (an alert) may
            // arrive only with the first reply; either way the command fails.
            let without = try RedisConnection(configuration: tlsConfiguration(server, caFile: certs.caFile))
            let error = await #expect(throws: RedisError.self) { try await without.send(PING()) }
            #expect(error?.closesConnection == true, "\(String(describing: error))")
            // The server never served it: only the certified client was ever listed.
            #expect(try await withCertificate.clientList().count == 1)
        }
    }

    // TLS 1.3 checks the client's certificate after the client's side of the handshake is done:
    // the refusal ("tlsv1 alert unknown ca") came as an I/O error on the first exchange, or as
    // "server closed the connection" when the write met the closed socket first, and `serve`
    // and `work` waited for Redis for ever (a user-style pass). Now it is a TLS refusal with
    // OpenSSL's reason, whichever comes first (several connections: both paths occur).
    @Test func clientCertificateFromAnUntrustedCA() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS(requireClientCertificates: true) }) { server in
            for _ in 0..<5 {
                let refused = try RedisConnection(
                    configuration: tlsConfiguration(
                        server, caFile: certs.caFile, certificateFile: certs.otherClientCertificateFile, keyFile: certs.otherClientKeyFile))
                let error = await #expect(throws: RedisError.self) { try await refused.send(PING()) }
                #expect(error?.code == .tlsHandshakeFailed, "\(String(describing: error))")
                #expect(error?.message.contains("unknown ca") == true, "\(String(describing: error))")
                #expect(error?.message.contains("client certificate") == true, "\(String(describing: error))")
                #expect(error?.commandDidNotRun == true)
            }
        }
    }

    @Test func clientCertificateWithoutKeyIsAConfigurationError() async throws {
        let certs = try await TestCertificates.shared()
        let error = #expect(throws: RedisError.self) {
            try TLSContext(.init(caFile: certs.caFile, certificateFile: certs.clientCertificateFile))
        }
        #expect(error?.code == .tlsConfiguration)
    }

    @Test func wrongCertificateAuthority() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS() }) { server in
            let connection = try RedisConnection(configuration: tlsConfiguration(server, caFile: certs.otherCAFile))
            let error = await #expect(throws: RedisError.self) { try await connection.send(PING()) }
            #expect(error?.code == .tlsVerifyFailed)
            // OpenSSL's own reason (X509_verify_cert_error_string) is in the message. redis-server
            // sends its CA along with its certificate, so OpenSSL meets an untrusted self-signed
            // root; without the CA in the chain it could not find the issuer.
            let message = error?.message ?? ""
            #expect(message.hasPrefix("TLS verify failed: "))
            #expect(
                message.contains("self-signed certificate in certificate chain")
                    || message.contains("unable to get local issuer certificate"), "\(message)")
            #expect(error?.commandDidNotRun == true)
        }
    }

    @Test func wrongHostName() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS() }) { server in
            let connection = try RedisConnection(
                configuration: tlsConfiguration(server, caFile: certs.caFile, serverName: "wrong.example"))
            let error = await #expect(throws: RedisError.self) { try await connection.send(PING()) }
            #expect(error?.code == .tlsHostnameMismatch)
            #expect(error?.message.contains("wrong.example") == true)
        }
    }

    /// A plain-text client on a TLS port fails; nothing is ever exchanged in plain text, and the
    /// error says to use rediss:// (as the TLS port's verdict, or, in a process that has had a
    /// plain-text answer already, as the hint of a drop before any reply), with or without a
    /// password (then the handshake's AUTH is what fails).
    @Test func plainClientOnTLSPort() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS() }) { server in
            var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: server.port))
            config.reconnect.retryWindow = .zero
            for password in [nil, "secret"] as [String?] {
                config.authentication = password.map { .init(password: $0) }
                let error = await #expect(throws: RedisError.self) { try await RedisConnection(configuration: config).send(PING()) }
                #expect(error?.closesConnection == true)
                #expect(error?.message.contains("use rediss://") == true, "\(String(describing: error))")
            }
        }
    }

    /// The probe behind the verdict: a TLS handshake completes, or ends in a TLS refusal, at a TLS
    /// port, also one that wants a client certificate we do not have, over TLS 1.3 (it refuses
    /// after the handshake) or only TLS 1.2 (it refuses in it, after its own certificate, which
    /// fails verification: the probe said "not TLS" there before a review); it fails at a plain
    /// redis-server and at a server that drops the connection.
    @Test(arguments: [(false, false), (true, false), (true, true)])
    func theProbeTellsATLSPort(serverWantsClientCertificate: Bool, onlyTLS12: Bool) async throws {
        let certs = try await TestCertificates.shared()
        var tls = certs.serverTLS()
        tls.requireClientCertificates = serverWantsClientCertificate
        try await withRedisServer(.with { $0.tls = tls; $0.extraArguments = onlyTLS12 ? ["--tls-protocols", "TLSv1.2"] : [] }) { server in
            #expect(TLSPortProbe.speaksTLS(host: "127.0.0.1", port: server.port))
        }
        try await withRedisServer { server in #expect(!TLSPortProbe.speaksTLS(host: "127.0.0.1", port: server.port)) }
        let dropping = try NotRedisServer(answer: "")
        defer { dropping.stop() }
        #expect(!TLSPortProbe.speaksTLS(host: "127.0.0.1", port: dropping.port))
    }

    /// A process given `redis://` for a TLS port ends at once, saying to use rediss://, with or
    /// without a password: a worker waited for ever (its start-up wait retries what is
    /// transient), saying only "if it is a TLS port, use rediss://". Child processes: the verdict
    /// is given only in a process that no server has answered in plain text yet.
    @Test func aProcessStartedWithRedisURLAtATLSPortExitsSayingSo() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS(requireClientCertificates: true) }) { server in
            for (arguments, url) in [
                (["ping"], "redis://127.0.0.1:\(server.port)"),
                (["work", "crm", "--metrics-port", "0"], "redis://:secret@127.0.0.1:\(server.port)"),
            ] {
                let child = try ChildProcess(try builtProduct("ordershop"), arguments + ["--url", url])
                let status = await child.waitForExit(timeout: .seconds(60))
                await child.stop(signal: SIGKILL)
                #expect(status != nil && status != 0, "\(arguments): status \(String(describing: status)): \(child.output)")
                #expect(child.output.contains("answers in TLS: use rediss://"), "\(arguments): \(child.output)")
                #expect(!child.output.contains("secret"), "\(child.output)")
            }
        }
    }

    /// Once a server has answered this process in plain text, no port is called a TLS port: some
    /// take both (ElastiCache's "preferred" in-transit encryption, a proxy routing on the
    /// ClientHello), and a drop there during a failover is the transient failure it seems. (The
    /// flag only ever goes from false to true: the order of tests cannot matter.)
    @Test func noPortIsCalledATLSPortOnceAServerAnsweredInPlainText() async throws {
        try await withRedisServer { plain in
            let connection = try RedisConnection(configuration: RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: plain.port)))
            _ = try await connection.send(PING())
        }
        #expect(!TLSPortProbe.mayJudge)
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS() }) { server in
            var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: server.port))
            config.reconnect.retryWindow = .zero
            config.authentication = .init(password: "secret")
            let error = await #expect(throws: RedisError.self) { try await RedisConnection(configuration: config).send(PING()) }
            #expect(error?.code == .connectionClosed, "\(String(describing: error))")
            #expect(error?.isTransient == true, "\(String(describing: error))")
        }
    }

    /// A server that drops the connection before any reply and speaks no TLS either (one going
    /// away, say) is not called a TLS port: in the handshake (with a password) the failure stays
    /// transient, retried as before; a command's stays "outcome unknown". Both keep the hint.
    @Test func aDropBeforeAnyReplyFromAPlainServerIsNoTLSPort() async throws {
        let dropping = try NotRedisServer(answer: "")
        defer { dropping.stop() }
        var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: dropping.port))
        config.reconnect.retryWindow = .zero
        let error = await #expect(throws: RedisError.self) { try await RedisConnection(configuration: config).send(PING()) }
        #expect(error?.code == .outcomeUnknown, "\(String(describing: error))")
        #expect(error?.message.contains("if it is a TLS port, use rediss://") == true, "\(String(describing: error))")

        config.authentication = .init(password: "secret")
        let handshakeError = await #expect(throws: RedisError.self) { try await RedisConnection(configuration: config).send(PING()) }
        #expect(handshakeError?.code == .connectionClosed, "\(String(describing: handshakeError))")
        #expect(handshakeError?.isTransient == true, "\(String(describing: handshakeError))")
        #expect(handshakeError?.message.contains("if it is a TLS port, use rediss://") == true, "\(String(describing: handshakeError))")
    }

    /// A URL naming a port where something else than Redis listens (an HTTP server): the error
    /// says so, and that no command ran (it was "outcomeUnknown ... it may or may not have run
    /// (Protocol error, got "H" as reply type byte)"), with a password (the handshake fails) or
    /// without.
    @Test func aServerThatIsNoRedisIsNamed() async throws {
        let http = try NotRedisServer(answer: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        defer { http.stop() }
        for password in [nil, "secret"] as [String?] {
            var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: http.port))
            config.reconnect.retryWindow = .zero
            if let password { config.authentication = .init(password: password) }
            let connection = try RedisConnection(configuration: config)
            let error = await #expect(throws: RedisError.self) { try await connection.send(PING()) }
            #expect(error?.code == .protocolError, "\(String(describing: error))")
            #expect(error?.message.contains("the server at 127.0.0.1:\(http.port) does not answer in RESP") == true, "\(String(describing: error))")
            #expect(error?.message.contains("no command ran") == true, "\(String(describing: error))")
        }
        // A TLS server that answers a plain client with an alert record (0x15): a TLS port.
        let tls = try NotRedisServer(answer: "\u{15}\u{03}\u{03}\u{00}\u{02}\u{02}\u{46}")
        defer { tls.stop() }
        var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: tls.port))
        config.reconnect.retryWindow = .zero
        let error = await #expect(throws: RedisError.self) { try await RedisConnection(configuration: config).send(PING()) }
        #expect(error?.message.contains("it answers in TLS: use rediss://") == true, "\(String(describing: error))")
    }

    /// A TLS client on a plain port fails the handshake, and never falls back to plain text.
    @Test func tlsClientOnPlainPort() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer { server in
            var config = tlsConfiguration(server, caFile: certs.caFile)
            // redis-server waits for the end of a line that the ClientHello may never contain;
            // the handshake then ends at the connect timeout.
            config.timeouts.connect = .seconds(2)
            let connection = try RedisConnection(configuration: config)
            let error = await #expect(throws: RedisError.self) { try await connection.send(PING()) }
            #expect(error?.code == .tlsHandshakeFailed)
            #expect(error?.commandDidNotRun == true)
            // The server still works for plain-text clients.
            let plain = try server.makeConnection()
            #expect(try await plain.send(PING()) == "PONG")
        }
    }
}
