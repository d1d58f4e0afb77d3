import Foundation
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// Issue 13, Why 6: TLS failures an operator must be able to read.
@Suite struct TLSReasonTests {
    /// Mutual TLS without a client certificate reported "connectionClosed".
    @Test func mutualTLSWithoutAClientCertificateSaysSo() async throws {
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS(requireClientCertificates: true) }) { server in
            var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: server.port))
            config.tls = .enable(.init(caFile: certs.caFile, serverName: "localhost"))
            config.reconnect.retryWindow = .zero
            let connection = try RedisConnection(configuration: config)
            let error = await #expect(throws: RedisError.self) { try await connection.send(PING()) }
            let text = "\(String(describing: error))"
            #expect(text.contains("client certificate"), "\(text)")
            #expect(error?.closesConnection == true)
        }
    }

    /// `ssl_cert_reqs=none` printed the same `ping` as a verified connection.
    @Test func pingWithoutVerificationWarns() async throws {
        let ordershop = try builtProduct("ordershop")
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS() }) { server in
            let env = ["REDIS_URL": "", "REDIS_TLS_CA_FILE": "", "REDIS_TLS_CERT_FILE": "", "REDIS_TLS_KEY_FILE": "", "REDIS_TLS_SERVER_NAME": ""]
            let unverified = try await runChild(
                ordershop, ["ping", "--url", "rediss://127.0.0.1:\(server.port)/0?ssl_cert_reqs=none"], environment: env)
            #expect(unverified.status == 0, "\(unverified.output)")
            #expect(unverified.output.contains("PONG"))
            #expect(unverified.output.lowercased().contains("warning") && unverified.output.contains("NOT verified"), "\(unverified.output)")

            let verified = try await runChild(
                ordershop, ["ping", "--url", "rediss://127.0.0.1:\(server.port)"], environment: env.merging(["REDIS_TLS_CA_FILE": certs.caFile]) { $1 })
            #expect(verified.status == 0, "\(verified.output)")
            #expect(!verified.output.lowercased().contains("warning"), "\(verified.output)")
        }
    }
}
