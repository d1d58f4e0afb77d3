import Foundation
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// A TLS cluster (`tls-cluster yes`, `tls-replication yes`) with ACL users: every node is
/// verified, a wrong CA is refused by every node with OpenSSL's reason, and a user lacking a
/// command gets NOPERM once, not a retry loop.
@Suite(.serialized) struct ClusterSecurityTests {
    @Test func tlsClusterWithACLUsers() async throws {
        // The certificate names `localhost` only: a node announced as 127.0.0.1 verifies only
        // against the seed's host name.
        let certs = try await TestCertificates.make(serverNames: ["DNS:localhost"])
        defer { certs.remove() }
        let aclFile = certs.directory + "/users.acl"
        try """
            user default off
            user admin on >admin-secret ~* &* +@all
            user app on >app-secret ~* &* +@all -xadd
            """.write(toFile: aclFile, atomically: true, encoding: .utf8)
        var options = LocalRedisCluster.Options()
        options.tls = .init(certificateFile: certs.serverCertificateFile, keyFile: certs.serverKeyFile, caFile: certs.caFile)
        options.tlsClientCertificate = (certs.clientCertificateFile, certs.clientKeyFile)
        options.aclFile = aclFile
        options.admin = .init(username: "admin", password: "admin-secret")

        try await withLocalCluster(options) { cluster, _ in
            let port = cluster.nodes[0].port
            // The URL as users write it: a host name, further seeds, the CA, an ACL user.
            var config = try RedisConfiguration(
                url: "rediss://app:app-secret@localhost:\(port)?addr=127.0.0.1:\(cluster.nodes[1].port)&ssl_ca_certs=\(certs.caFile)")
            #expect(config.clusterMode == .auto)
            #expect(try await isClusterEnabled(config))
            config.reconnect.retryWindow = .zero
            let client = try #require(try await connectRedis(config) as? RedisClusterClient)
            try await client.connect()
            #expect(client.shards.count == 3, "\(client.shards)")
            // Keys on every primary: every node was reached over verified TLS.
            var primaries: Set<ClusterNodeAddress> = []
            for i in 0..<200 {
                let key = RedisArgument("k\(i)")
                #expect(try await client.send(SET(key, RedisArgument(i))))
                primaries.insert(client.primary(for: HashSlot(key: key))!)
            }
            #expect(primaries.count == 3)
            #expect(primaries.allSatisfy { $0.host == "127.0.0.1" })

            // NOPERM: named, thrown once, no retry.
            let slot = HashSlot(key: "events")
            let owner = try #require(cluster.index(ofPort: client.primary(for: slot)!.port))
            let error = await #expect(throws: RedisError.self) {
                try await client.send(XADD("events", fields: [StreamField("f", "v")]))
            }
            #expect(error?.code == .noPermission)
            #expect(error?.message.lowercased().contains("xadd") == true, "\(error?.message ?? "")")
            #expect(client.statistics.busyRetries == 0 && client.statistics.nodeRetries == 0)
            let admin = try cluster.connection(owner)
            let log = try await admin.send(["ACL", "LOG"]).array ?? []
            #expect(log.count == 1, "\(log)")
            await admin.close()
            await client.shutdown()

            // Seeds given by IP with no server name: the certificate has no IP, every node refuses.
            var byIP = cluster.configuration
            byIP.node.tls = .enable(.init(caFile: certs.caFile))
            let ipClient = try RedisClusterClient(configuration: byIP)
            let mismatch = await #expect(throws: RedisError.self) { try await ipClient.connect() }
            #expect(mismatch?.code == .tlsHostnameMismatch, "\(mismatch?.description ?? "")")

            // A wrong CA: every node refused, each with OpenSSL's reason.
            var wrong = cluster.configuration
            wrong.node.tls = .enable(.init(caFile: certs.otherCAFile, serverName: "localhost"))
            let wrongClient = try RedisClusterClient(configuration: wrong)
            let refused = await #expect(throws: RedisError.self) { try await wrongClient.send(GET("k1")) }
            #expect(refused?.code == .tlsVerifyFailed)
            let message = refused?.message ?? ""
            for address in cluster.addresses { #expect(message.contains(address), "\(address) not in: \(message)") }
            #expect(
                message.contains("self-signed certificate in certificate chain") || message.contains("unable to get local issuer certificate"),
                "\(message)")
        }
    }
}
