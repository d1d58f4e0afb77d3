import RedisClient
import TestSupport
import Testing

/// `RedisConnection.withPinnedExecution`: commands run on the connection's own thread.
@Suite struct PinnedExecutionTests {
    @Test func commandsRunInOrderWhilePinned() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            let values = try await connection.withPinnedExecution {
                var values: [Int] = []
                for _ in 0..<100 { values.append(try await connection.send(INCRBY("n", by: 1))) }
                let replies = try await connection.pipeline([["INCR", "n"], ["GET", "n"]])
                values.append(replies[0].int ?? -1)
                values.append(replies[1].int ?? -1)
                return values
            }
            #expect(values == Array(1...101) + [101])

            // Another connection, used from the pinned task, works as usual.
            let other = try server.makeConnection()
            #expect(try await connection.withPinnedExecution { try await other.send(GET("n")) } == Array("101".utf8))
        }
    }

    /// A pinned loop and an ordinary caller share the connection; each sees its own replies.
    @Test func pinnedAndOrdinaryCallersShareTheConnection() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            async let pinned: [Int] = connection.withPinnedExecution {
                var seen: [Int] = []
                for _ in 0..<200 { seen.append(try await connection.send(INCRBY("shared", by: 1))) }
                return seen
            }
            var ordinary: [Int] = []
            for _ in 0..<200 { ordinary.append(try await connection.send(INCRBY("shared", by: 1))) }
            let pinnedSeen = try await pinned
            #expect(pinnedSeen == pinnedSeen.sorted() && ordinary == ordinary.sorted())
            #expect(Set(pinnedSeen + ordinary) == Set(1...400))
        }
    }

    @Test func cancellingAPinnedBlockedRead() async throws {
        try await withRedisServer { server in
            let reader = try server.makeConnection()
            let admin = try server.makeConnection()
            _ = try await reader.send(XGROUPCREATE("s", group: "g", id: "$"))
            let task = Task {
                try await reader.withPinnedExecution {
                    try await reader.send(XREADGROUP(group: "g", consumer: "c", streams: [("s", ">")], block: .seconds(600)))
                }
            }
            #expect(await eventually { try await admin.blockedClients() == 1 })
            task.cancel()
            let result = await task.result
            guard case .failure(let error) = result else {
                Issue.record("a cancelled pinned read returned \(result)")
                return
            }
            #expect((error as? RedisError)?.code == .cancelled)
            #expect(try await reader.withPinnedExecution { try await reader.send(PING()) } == "PONG")
        }
    }
}
