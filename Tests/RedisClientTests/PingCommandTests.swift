import Foundation
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// `ordershop ping`, run as a child process the way an operator runs it.
@Suite struct PingCommandTests {
    /// The environment for the child: our TLS variables, and none inherited from the test run.
    private func environment(caFile: String = "", serverName: String = "") -> [String: String] {
        [
            "REDIS_URL": "redis://127.0.0.1:1",
            "REDIS_TLS_CA_FILE": caFile,
            "REDIS_TLS_CERT_FILE": "",
            "REDIS_TLS_KEY_FILE": "",
            "REDIS_TLS_SERVER_NAME": serverName,
        ]
    }

    @Test func pingOverTLS() async throws {
        let ordershop = try builtProduct("ordershop")
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS() }) { server in
            // What the server and the TLS session look like to our own client.
            let connection = try server.makeConnection()
            let version = try #require(try await connection.infoField("server", "redis_version"))
            _ = try await connection.send(PING())
            let tls = try #require(await connection.tlsDetails)

            let result = try await runChild(
                ordershop, ["ping", "--url", "rediss://127.0.0.1:\(server.port)"], environment: environment(caFile: certs.caFile))
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("PONG"))
            #expect(result.output.contains(version))
            #expect(result.output.contains("TLSv1."))
            #expect(result.output.contains(tls.cipher))
        }
    }

    /// A URL that still names a demoted primary answers PONG like a primary (a trial): ping
    /// says which it reached. And seeds (`addr=`) beside a server that is not a cluster are
    /// refused in one line, where they were dropped without a word.
    @Test func pingSaysWhetherItReachedAPrimaryOrAReplica() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withReplication { replication in
            try await replication.waitUntilReplicasAttached()
            let primary = try await runChild(ordershop, ["ping", "--url", "redis://127.0.0.1:\(replication.servers[0].port)"], environment: environment())
            #expect(primary.status == 0, "\(primary.output)")
            #expect(primary.output.contains("role:     primary, 1 replicas connected"), "\(primary.output)")
            let replica = try await runChild(ordershop, ["ping", "--url", "redis://127.0.0.1:\(replication.servers[1].port)"], environment: environment())
            #expect(replica.status == 0, "\(replica.output)")
            #expect(replica.output.contains("role:     replica of 127.0.0.1:\(replication.servers[0].port) (link up): not the primary"), "\(replica.output)")

            let seeded = try await runChild(
                ordershop, ["ping", "--url", "redis://127.0.0.1:\(replication.servers[0].port)?addr=127.0.0.1:\(replication.servers[1].port)"],
                environment: environment())
            #expect(seeded.status != 0)
            #expect(seeded.output.contains("answers as a standalone server (cluster_enabled:0), but addr= names further Redis Cluster seeds"), "\(seeded.output)")
        }
    }

    @Test func pingWithTheWrongCA() async throws {
        let ordershop = try builtProduct("ordershop")
        let certs = try await TestCertificates.shared()
        try await withRedisServer(.with { $0.tls = certs.serverTLS() }) { server in
            let result = try await runChild(
                ordershop, ["ping", "--url", "rediss://127.0.0.1:\(server.port)"],
                environment: environment(caFile: certs.otherCAFile))
            #expect(result.status != 0)
            #expect(result.output.contains("TLS verify failed"), "\(result.output)")
            // OpenSSL's reason follows (see TLSTests.wrongCertificateAuthority).
            #expect(
                result.output.contains("self-signed certificate in certificate chain")
                    || result.output.contains("unable to get local issuer certificate"), "\(result.output)")
        }
    }

    @Test("a TLS flag with a plain-text URL, or a bad --url, is refused naming the flag with the subcommand's usage; a TLS variable, naming the variable")
    func tlsOptionWithPlainURL() async throws {
        let ordershop = try builtProduct("ordershop")
        let flag = try await runChild(ordershop, ["ping", "--url", "redis://127.0.0.1:1", "--tls-ca-file", "/ca.pem", "--tls-server-name", "h"], environment: environment())
        #expect(flag.status != 0)
        #expect(flag.output.contains("--tls-ca-file, --tls-server-name given but the Redis URL is not rediss://"), "\(flag.output)")
        #expect(!flag.output.contains("REDIS_TLS_CA_FILE"), "\(flag.output)")
        // A usage error of `ping`: its own usage, exit 64 (it came from `run` with the top-level usage).
        #expect(flag.status == 64 && flag.output.contains("Usage: ordershop ping"), "\(flag.output)")
        let badURL = try await runChild(ordershop, ["ping", "--url", "foo://x"], environment: environment())
        #expect(badURL.status == 64 && badURL.output.contains("unknown scheme 'foo'") && badURL.output.contains("Usage: ordershop ping"), "\(badURL.output)")
        let variable = try await runChild(ordershop, ["ping", "--url", "redis://127.0.0.1:1"], environment: environment(caFile: "/ca.pem"))
        #expect(variable.status != 0)
        #expect(variable.output.contains("REDIS_TLS_CA_FILE set but the Redis URL is not rediss://"), "\(variable.output)")
    }

    @Test func pingNeverPrintsThePassword() async throws {
        let ordershop = try builtProduct("ordershop")
        let password = "Tr0ub4dor&3-s3cret"
        try await withRedisServer(.with { $0.password = password }) { server in
            let encoded = "Tr0ub4dor%263-s3cret"
            let good = try await runChild(
                ordershop, ["ping", "--url", "redis://:\(encoded)@127.0.0.1:\(server.port)"], environment: environment())
            #expect(good.status == 0, "\(good.output)")
            #expect(good.output.contains("PONG"))
            #expect(!good.output.contains(password))
            #expect(!good.output.contains(encoded))

            let wrongPassword = "wr0ng-pa55word"
            let bad = try await runChild(
                ordershop, ["ping", "--url", "redis://default:\(wrongPassword)@127.0.0.1:\(server.port)"], environment: environment())
            #expect(bad.status != 0)
            #expect(bad.output.contains("WRONGPASS"), "\(bad.output)")
            #expect(!bad.output.contains(wrongPassword))
            #expect(!bad.output.contains(password))
        }
    }

    @Test func pingAConnectionRefused() async throws {
        let ordershop = try builtProduct("ordershop")
        let port = try LocalRedisServer.freePort()
        let result = try await runChild(ordershop, ["ping", "--url", "redis://127.0.0.1:\(port)"], environment: environment())
        #expect(result.status != 0)
        #expect(result.output.contains("refused"), "\(result.output)")
    }
}
