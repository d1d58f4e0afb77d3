import Foundation
import RedisClient
import TestSupport
import Testing

/// The RESP codec and connection-level protocol features: binary safety, large values,
/// pipelining, transactions and scripts.
@Suite struct ProtocolTests {
    /// Bytes that break naive text protocols: NUL, CR, LF, CRLF, 0xFF and invalid UTF-8.
    static let awkward: [UInt8] = [0x00, 0x0D, 0x0A, 0x0D, 0x0A, 0xFF, 0x24, 0x2A, 0x00, 0xC3, 0x28, 0xFE, 0x0A]

    @Test func binarySafeStringsAndStreams() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            let key = RedisArgument(bytes: [0x6B, 0x00, 0x0A, 0xFF])  // "k\0\n\xff"
            #expect(try await connection.send(SET(key, RedisArgument(bytes: Self.awkward))))
            #expect(try await connection.send(GET(key)) == Self.awkward)
            #expect(try await connection.send(["STRLEN", key]).int == Self.awkward.count)
            // The empty value is not nil.
            #expect(try await connection.send(SET("empty", RedisArgument(bytes: []))))
            #expect(try await connection.send(GET("empty")) == [])
            #expect(try await connection.send(GET("missing")) == nil)

            let id = try #require(
                try await connection.send(
                    XADD("binary", fields: [StreamField(name: "payload", value: Self.awkward), StreamField("kind", "raw")])))
            let entries = try await connection.send(XRANGE("binary"))
            #expect(entries.count == 1)
            #expect(entries.first?.id == id)
            #expect(entries.first?["payload"] == Self.awkward)
            #expect(entries.first?.string("kind") == "raw")
        }
    }

    @Test func fourMebibyteValue() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            var generator = SystemRandomNumberGenerator()
            let value = (0..<(4 * 1024 * 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(try await connection.send(SET("big", RedisArgument(bytes: value))))
            #expect(try await connection.send(["STRLEN", "big"]).int == value.count)
            let back = try await connection.send(GET("big"))
            #expect(back == value)
            // And the connection stays in step afterwards.
            #expect(try await connection.send(PING()) == "PONG")
        }
    }

    @Test func tenThousandPipelinedCommands() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            let commands: [[RedisArgument]] = (0..<10_000).map { i in
                i % 2 == 0 ? ["ECHO", RedisArgument("reply-\(i)")] : ["INCR", "counter"]
            }
            let replies = try await connection.pipeline(commands)
            #expect(replies.count == 10_000)
            var outOfOrder = 0
            for (i, reply) in replies.enumerated() {
                let expected: RESPValue = i % 2 == 0 ? .bulkString(Array("reply-\(i)".utf8)) : .integer(Int64(i / 2 + 1))
                if reply != expected { outOfOrder += 1 }
            }
            #expect(outOfOrder == 0)
            #expect(try await connection.send(GET("counter")) == Array("5000".utf8))
        }
    }

    @Test func pipelineKeepsErrorsInPlace() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            try await connection.send(["SET", "text", "not a number"])
            let replies = try await connection.pipeline([["INCR", "n"], ["INCR", "text"], ["INCR", "n"]])
            #expect(replies[0] == .integer(1))
            guard case .error(let message) = replies[1] else {
                Issue.record("expected an error reply, got \(replies[1])")
                return
            }
            #expect(message.hasPrefix("ERR"))
            #expect(replies[2] == .integer(2))

            let (a, b, c) = try await connection.pipeline(INCRBY("n", by: 10), GET("text"), XLEN("text"))
            #expect(try a.get() == 12)
            #expect(try b.get() == Array("not a number".utf8))
            #expect(throws: RedisError.self) { try c.get() }
            if case .failure(let error) = c { #expect(error.code == .wrongType) }
        }
    }

    @Test func transaction() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            let results = try await connection.transaction([["INCR", "a"], ["INCR", "a"], ["XADD", "s", "*", "f", "v"], ["GET", "a"]])
            #expect(results.count == 4)
            #expect(results[0] == .integer(1))
            #expect(results[1] == .integer(2))
            #expect(results[2].string.flatMap(StreamID.init) != nil)
            #expect(results[3] == .bulkString(Array("2".utf8)))

            // A command rejected while queueing (wrong arity) discards the whole transaction.
            let error = await #expect(throws: RedisError.self) {
                try await connection.transaction([["INCR", "a"], ["GET"]])
            }
            #expect(error?.code == .err)
            #expect(try await connection.send(GET("a")) == Array("2".utf8))
            // The connection is usable afterwards (no MULTI left open).
            #expect(try await connection.send(PING()) == "PONG")
        }
    }

    @Test func watchAbortsTheTransaction() async throws {
        try await withRedisServer { server in
            let watcher = try server.makeConnection()
            let other = try server.makeConnection()
            try await watcher.send(["SET", "balance", "10"])

            try await watcher.send(["WATCH", "balance"])
            try await other.send(["SET", "balance", "99"])
            let error = await #expect(throws: RedisError.self) {
                try await watcher.transaction([["INCRBY", "balance", "5"]])
            }
            #expect(error?.code == .transactionAborted)
            #expect(try await other.send(GET("balance")) == Array("99".utf8))

            // Unchanged while watched: the transaction runs.
            try await watcher.send(["WATCH", "balance"])
            let results = try await watcher.transaction([["INCRBY", "balance", "5"]])
            #expect(results == [.integer(104)])
        }
    }

    @Test func scriptCachingAndNoScriptFallBack() async throws {
        try await withRedisServer { server in
            let connection = try server.makeConnection()
            let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            #expect(script.sha1.count == 40)
            // Redis names the script by the same SHA-1.
            let loaded = try await connection.send(["SCRIPT", "LOAD", RedisArgument(script.source)])
            #expect(loaded.string == script.sha1)
            try await connection.send(["SCRIPT", "FLUSH"])
            try await connection.send(["CONFIG", "RESETSTAT"])

            #expect(try await connection.evaluate(script, keys: ["n"], arguments: ["5"]) == .integer(5))
            #expect(try await scriptLoads(connection) == 1)
            // Cached now: EVALSHA runs it without loading again.
            #expect(try await connection.evaluate(script, keys: ["n"], arguments: ["2"]) == .integer(7))
            #expect(try await scriptLoads(connection) == 1)

            // After SCRIPT FLUSH the NOSCRIPT fall-back loads it once more, and it runs once.
            try await connection.send(["SCRIPT", "FLUSH"])
            #expect(try await connection.evaluate(script, keys: ["n"], arguments: ["1"]) == .integer(8))
            #expect(try await scriptLoads(connection) == 2)
            #expect(try await connection.send(GET("n")) == Array("8".utf8))

            // A script error is thrown, with the server's code.
            let failing = RedisScript("return redis.call('INCR', KEYS[1])")
            try await connection.send(["SET", "text", "abc"])
            let error = await #expect(throws: RedisError.self) { try await connection.evaluate(failing, keys: ["text"]) }
            #expect(error?.code == .err)
        }
    }

    /// How many times SCRIPT LOAD ran since the last CONFIG RESETSTAT.
    private func scriptLoads(_ connection: RedisConnection) async throws -> Int {
        let stats = try await connection.send(INFO(section: "commandstats"))
        guard let line = stats["cmdstat_script|load"] else { return 0 }
        // calls=1,usec=...,usec_per_call=...,rejected_calls=0,failed_calls=0
        let calls = line.split(separator: ",").first { $0.hasPrefix("calls=") }
        return calls.flatMap { Int($0.dropFirst("calls=".count)) } ?? -1
    }
}
