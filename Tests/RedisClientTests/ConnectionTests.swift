import Foundation
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// Transports (TCP, unix socket) and authentication (password, ACL users).
@Suite struct ConnectionTests {
    @Test func plainTCP() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            #expect(try await connection.send(PING()) == "PONG")
            #expect(try await connection.send(SET("greeting", "hello")))
            #expect(try await connection.send(GET("greeting")) == Array("hello".utf8))
            #expect(await connection.tlsDetails == nil)
        }
    }

    @Test func unixSocket() async throws {
        try await withRedisServer(.with { $0.unixSocket = true }) { server in
            let connection = try RedisConnection(configuration: RedisConfiguration(url: "unix://\(server.unixSocketPath)?db=3"))
            #expect(try await connection.send(PING()) == "PONG")
            try await connection.send(["SET", "where", "unix"])
            // The key went to database 3 over the unix socket; TCP on database 3 sees it too.
            let tcp = try server.makeConnection { $0.database = 3 }
            #expect(try await tcp.send(GET("where")) == Array("unix".utf8))
            // The server lists a client connected through its unix socket.
            let clients = try await tcp.clientList()
            #expect(clients.contains { $0["laddr"]?.hasPrefix(server.unixSocketPath) == true })
        }
    }

    @Test func unixSocketThatDoesNotExist() async throws {
        var config = RedisConfiguration(endpoint: .unix(path: "/tmp/ordershop-no-such-\(UUID().uuidString).sock"))
        config.reconnect.retryWindow = .zero
        let connection = try RedisConnection(configuration: config)
        let error = await #expect(throws: RedisError.self) { try await connection.send(PING()) }
        // Retried as a refusal, but said as it is (it read "connection refused").
        #expect(error?.code == .connectionRefused)
        #expect(error?.message.contains("no socket file at /tmp/ordershop-no-such-") == true, "\(String(describing: error))")
    }

    @Test func password() async throws {
        try await withRedisServer(.with { $0.password = "right horse battery" }) { server in
            let good = try server.makeConnection()
            #expect(try await good.send(PING()) == "PONG")

            var config = server.configuration
            config.reconnect.retryWindow = .zero
            config.authentication = .init(password: "wrong-password-123")
            let wrong = try RedisConnection(configuration: config)
            let error = await #expect(throws: RedisError.self) { try await wrong.send(PING()) }
            #expect(error?.code == .wrongPassword)
            #expect(error?.description.contains("wrong-password-123") == false)

            config.authentication = nil
            let none = try RedisConnection(configuration: config)
            let noAuth = await #expect(throws: RedisError.self) { try await none.send(PING()) }
            #expect(noAuth?.code == .noAuth)
        }
    }

    /// An ACL user that may read `orders:*` and add to streams, loaded from an ACL file, and
    /// one added at run time with ACL SETUSER.
    @Test func aclUserWithLimitedRights() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("acl-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let aclFile = directory + "/users.acl"
        try """
            user default on nopass ~* &* +@all
            user billing on >billing-pw ~orders:* resetchannels -@all +get +xadd +xlen +ping +client|setname

            """.write(toFile: aclFile, atomically: true, encoding: .utf8)

        try await withRedisServer(.with { $0.aclFile = aclFile }) { server in
            let admin = try server.makeConnection()
            try await admin.send(["SET", "orders:1", "42"])
            try await admin.send(["SET", "secrets:1", "hidden"])

            let billing = try server.makeConnection {
                $0.authentication = .init(username: "billing", password: "billing-pw")
                $0.clientName = "billing-worker"
            }
            #expect(try await billing.send(GET("orders:1")) == Array("42".utf8))
            #expect(try await billing.send(XADD("orders:events", fields: [StreamField("type", "created")])) != nil)
            #expect(try await billing.send(XLEN("orders:events")) == 1)

            // A command the user may not run.
            let denied = await #expect(throws: RedisError.self) { try await billing.send(SET("orders:1", "43")) }
            #expect(denied?.code == .noPermission)
            // A key outside the user's pattern.
            let deniedKey = await #expect(throws: RedisError.self) { try await billing.send(GET("secrets:1")) }
            #expect(deniedKey?.code == .noPermission)
            // A denied command is an error reply, not a broken connection: the next one works.
            #expect(try await billing.send(PING()) == "PONG")
            #expect(try await admin.send(GET("orders:1")) == Array("42".utf8))

            // A user added at run time.
            try await admin.send(["ACL", "SETUSER", "reader", "on", ">reader-pw", "~*", "-@all", "+get"])
            let reader = try server.makeConnection { $0.authentication = .init(username: "reader", password: "reader-pw") }
            #expect(try await reader.send(GET("secrets:1")) == Array("hidden".utf8))
            let readerDenied = await #expect(throws: RedisError.self) { try await reader.send(XLEN("orders:events")) }
            #expect(readerDenied?.code == .noPermission)

            let impostor = try server.makeConnection {
                $0.authentication = .init(username: "billing", password: "not-billing-pw")
                $0.reconnect.retryWindow = .zero
            }
            let wrong = await #expect(throws: RedisError.self) { try await impostor.send(PING()) }
            #expect(wrong?.code == .wrongPassword)
        }
    }

    @Test func connectionRefused() async throws {
        let port = try LocalRedisServer.freePort()  // nothing listens there
        var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port))
        config.reconnect.retryWindow = .zero
        let connection = try RedisConnection(configuration: config)
        let error = await #expect(throws: RedisError.self) { try await connection.send(PING()) }
        #expect(error?.code == .connectionRefused)
        #expect(error?.commandDidNotRun == true)
    }

    @Test func selectsTheDatabaseAndNamesTheClient() async throws {
        try await withRedisServer { server in
            let named = try server.makeConnection {
                $0.database = 5
                $0.clientName = "ordershop-test"
            }
            try await named.send(["SET", "k", "in-5"])
            let other = try server.makeConnection()
            #expect(try await other.send(GET("k")) == nil)
            try await other.send(["SELECT", "5"])
            #expect(try await other.send(GET("k")) == Array("in-5".utf8))
            let clients = try await other.clientList()
            #expect(clients.contains { $0["name"] == "ordershop-test" && $0["db"] == "5" })
        }
    }
}
