import Foundation
import Synchronization
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// Single commands sent through a pool by many tasks at once share round trips
/// (`RedisConnectionPool.sendCoalesced`): each caller gets its own reply, and a batch cut by
/// the server's death tells each caller what a lent connection would have.
@Suite(.timeLimit(.minutes(1))) struct CoalescedCommandsTests {
    /// Runs `body` with a pool of one connection that another task holds until `release` is
    /// opened: commands sent meanwhile queue up, and the connection drains them as one batch
    /// when it comes back.
    func withOnlyConnectionHeld(
        _ server: LocalRedisServer, _ tweak: (inout RedisConfiguration) -> Void = { _ in },
        _ body: (RedisConnectionPool, _ holder: RedisConnection, _ release: Latch) async throws -> Void
    ) async throws {
        let pool = try server.makePool(maximumConnections: 1, tweak: tweak)
        let holding = Latch()
        let release = Latch()
        let held = Mutex<RedisConnection?>(nil)
        let holder = Task {
            try await pool.withConnection { connection in
                _ = try await connection.send(PING())
                held.withLock { $0 = connection }
                holding.open()
                await release.wait()
            }
        }
        await holding.wait()
        do {
            try await body(pool, held.withLock { $0! }, release)
        } catch {
            release.open()
            throw error
        }
        release.open()
        try await holder.value
        await pool.shutdown()
    }

    @Test("fifty commands queued at once are written as one batch, and each caller gets its own reply")
    func queuedCommandsShareOneBatch() async throws {
        try await withRedisServer { server in
            try await withOnlyConnectionHeld(server) { pool, holder, release in
                let readsBefore = try #require(Int(try await holder.send(INFO(section: "stats"))["total_reads_processed"] ?? ""))
                let senders = (0..<50).map { i in Task { try await pool.send(["ECHO", RedisArgument("reply \(i)")]) } }
                #expect(await eventually { pool.waitingCallers == 50 })
                release.open()
                for (i, sender) in senders.enumerated() {
                    #expect(try await sender.value == .bulkString(Array("reply \(i)".utf8)))
                }
                // One write of fifty commands is read by the server in a read or two (the INFO
                // below is one more); fifty round trips would be fifty reads at least.
                let stats = try await pool.send(INFO(section: "stats"))
                let reads = try #require(Int(stats["total_reads_processed"] ?? "")) - readsBefore
                #expect(reads <= 6, "the server read \(reads) times for 50 queued commands")
            }
        }
    }

    @Test("pipelines queued beside single commands ride the same batch, each pipeline's replies together and in order")
    func pipelinesShareTheBatch() async throws {
        try await withRedisServer { server in
            try await withOnlyConnectionHeld(server) { pool, holder, release in
                let readsBefore = try #require(Int(try await holder.send(INFO(section: "stats"))["total_reads_processed"] ?? ""))
                let singles = (0..<20).map { i in Task { try await pool.send(["ECHO", RedisArgument("single \(i)")]) } }
                let pipelines = (0..<10).map { i in
                    Task { await pool.pipeline((0..<3).map { j in RawCommand(["ECHO", RedisArgument("pipeline \(i).\(j)")]) }) }
                }
                #expect(await eventually { pool.waitingCallers == 30 })
                release.open()
                for (i, single) in singles.enumerated() {
                    #expect(try await single.value == .bulkString(Array("single \(i)".utf8)))
                }
                for (i, pipeline) in pipelines.enumerated() {
                    let replies = await pipeline.value.map { try? $0.get() }
                    #expect(replies == (0..<3).map { j in .bulkString(Array("pipeline \(i).\(j)".utf8)) })
                }
                let stats = try await pool.send(INFO(section: "stats"))
                let reads = try #require(Int(stats["total_reads_processed"] ?? "")) - readsBefore
                #expect(reads <= 6, "the server read \(reads) times for 50 queued commands")
            }
        }
    }

    @Test("a batch written to a server that dies before answering: each of its callers learns the outcome is unknown")
    func batchCutByTheServersDeath() async throws {
        try await withRedisServer { server in
            // A command timeout far beyond the test's wait: the batch fails by the server's death.
            try await withOnlyConnectionHeld(server, { $0.reconnect.retryWindow = .zero; $0.timeouts.command = .seconds(50) }) { pool, holder, release in
                // The server holds every write it reads for 20 s: the batch is written and not answered.
                _ = try await holder.send(["CLIENT", "PAUSE", "20000", "WRITE"])
                let senders = (0..<10).map { i in Task { try await pool.send(["SET", RedisArgument("k\(i)"), "v"]) } }
                #expect(await eventually { pool.waitingCallers == 10 })
                release.open()
                // Written: the server holds a client in its first SET (CLIENT LIST answers
                // during a pause of writes).
                let observer = try server.makeConnection()
                #expect(await eventually { try await observer.clientList().contains { $0["cmd"] == "set" && $0["flags"]?.contains("b") == true } })
                await observer.close()
                await server.kill()
                for sender in senders {
                    do {
                        _ = try await sender.value
                        Issue.record("a command was answered by a server that held it, then died")
                    } catch let error as RedisError {
                        // Sent: never "did not run", which would let a caller retry a write
                        // that may have been applied.
                        #expect(error.code == .outcomeUnknown, "\(error)")
                        #expect(!error.commandDidNotRun)
                    }
                }
            }
        }
    }

    @Test("commands queued while the server is gone are not lost: the drain cannot connect, each is sent on a lent connection, which waits for the server's return")
    func queuedWhileTheServerIsGone() async throws {
        try await withRedisServer { server in
            try await withOnlyConnectionHeld(server, { $0.reconnect.retryWindow = .seconds(40) }) { pool, holder, release in
                let senders = (0..<10).map { i in Task { try await pool.send(["SET", RedisArgument("k\(i)"), RedisArgument("v\(i)")]) } }
                #expect(await eventually { pool.waitingCallers == 10 })
                await server.kill()
                release.open()
                // The drain found no server: every command went back to its caller as not sent,
                // and the callers wait in turn for the pool's one connection, which retries.
                #expect(await eventually { pool.waitingCallers == 9 })
                try await server.start()
                for sender in senders { #expect(try await sender.value.string == "OK") }
                let observer = try server.makeConnection()
                for i in 0..<10 { #expect(try await observer.send(["GET", RedisArgument("k\(i)")]).string == "v\(i)") }
                await observer.close()
            }
        }
    }

    @Test("a blocking command given raw keeps a connection of its own: commands sent meanwhile do not wait behind it")
    func blockingRawCommandIsNotCoalesced() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool(maximumConnections: 2)
            let popped = Task { try await pool.send(["BLPOP", "queue", "0"]) }
            let observer = try server.makeConnection()
            #expect(await eventually { try await observer.blockedClients() == 1 })
            // Answered while BLPOP still waits (coalesced behind it, it would wait with it).
            for _ in 0..<5 { #expect(try await pool.send(PING()) == "PONG") }
            #expect(try await observer.blockedClients() == 1)
            _ = try await observer.send(["RPUSH", "queue", "job"])
            #expect(try await popped.value.array?.last?.string == "job")
            await observer.close()
            await pool.shutdown()
        }
    }
}
