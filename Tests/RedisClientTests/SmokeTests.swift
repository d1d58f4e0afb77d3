import RedisClient
import TestSupport
import Testing

@Suite struct SmokeTests {
    @Test func pingOverTCP() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            #expect(try await connection.send(PING()) == "PONG")
        }
    }
}
