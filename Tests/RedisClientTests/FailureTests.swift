import Foundation
import LocalRedis
import RedisClient
import Synchronization
import TestSupport
import Testing

/// Restarts, dropped connections, timeouts and cancellation, with real processes.
@Suite struct FailureTests {
    /// The same connection and pool keep working across a server crash and restart.
    @Test func reconnectsAfterTheServerRestarts() async throws {
        let options = LocalRedisServer.Options.with {
            $0.appendOnly = true
            $0.appendFsync = "always"
        }
        try await withRedisServer(options) { server in
            let connection = try server.makeConnection()
            let pool = try server.makePool(maximumConnections: 2)
            for i in 0..<3 { _ = try await connection.send(XADD("events", fields: [StreamField("n", "\(i)")])) }
            _ = try await pool.send(XGROUPCREATE("events", group: "g", id: "0"))

            await server.kill()
            try await server.start()

            // Both reconnect on their own; the data survived in the append-only file.
            #expect(try await connection.send(XLEN("events")) == 3)
            #expect(try await pool.send(XLEN("events")) == 3)
            #expect(try await pool.send(XINFOGROUPS("events")).map(\.name) == ["g"])

            // A command sent while the server is down waits inside the reconnect window.
            await server.kill()
            let restarter = Task {
                try await Task.sleep(for: .milliseconds(300))
                try await server.start()
            }
            var patient = server.configuration
            patient.reconnect.retryWindow = .seconds(60)
            let waiting = try RedisConnection(configuration: patient)
            #expect(try await waiting.send(XLEN("events")) == 3)
            try await restarter.value
            #expect(try await connection.send(PING()) == "PONG")
            await pool.shutdown()
        }
    }

    /// A blocked command whose connection is killed reports an unknown outcome, and is not re-sent.
    @Test func commandInFlightWhenClientKilledIsOutcomeUnknown() async throws {
        try await withRedisServer { server in
            let victim = try server.makeConnection { $0.timeouts.command = .seconds(120) }
            let admin = try server.makeConnection()
            let victimID = try #require(try await victim.send(["CLIENT", "ID"]).int)

            // BLPOP with no timeout: the reply can only come from a push, or the connection dropping.
            let popped = Task { try await victim.send(["BLPOP", "queue", "0"]) }
            #expect(await eventually { try await admin.blockedClients() == 1 })
            #expect(try await admin.send(["CLIENT", "KILL", "ID", RedisArgument(victimID)]).int == 1)

            let error = await #expect(throws: RedisError.self) { try await popped.value }
            #expect(error?.code == .outcomeUnknown)
            #expect(error?.commandDidNotRun == false)

            // Had the client re-sent BLPOP, a new blocked client would now take this element.
            #expect(try await admin.blockedClients() == 0)
            try await admin.send(["RPUSH", "queue", "job-1"])
            #expect(try await admin.send(["LLEN", "queue"]).int == 1)

            // The same connection reconnects for the next command.
            #expect(try await victim.send(["LPOP", "queue"]).string == "job-1")
            #expect(try await victim.send(["CLIENT", "ID"]).int != victimID)
        }
    }

    /// The server dies while XREADGROUP BLOCK waits: outcome unknown; after a restart the same
    /// connection works again.
    @Test func commandInFlightWhenServerDiesIsOutcomeUnknown() async throws {
        let options = LocalRedisServer.Options.with {
            $0.appendOnly = true
            $0.appendFsync = "always"
        }
        try await withRedisServer(options) { server in
            let reader = try server.makeConnection()
            let admin = try server.makeConnection()
            _ = try await reader.send(XGROUPCREATE("s", group: "g", id: "$"))

            // Blocked far longer than it takes to see it blocked: with 5 s, a loaded full run once
            // saw the read end empty before the kill.
            let read = Task {
                try await reader.send(XREADGROUP(group: "g", consumer: "c", streams: [("s", ">")], count: 1, block: .milliseconds(60000)))
            }
            #expect(await eventually { try await admin.blockedClients() == 1 })
            await server.kill()
            let error = await #expect(throws: RedisError.self) { try await read.value }
            #expect(error?.code == .outcomeUnknown)

            try await server.start()
            _ = try await admin.send(XADD("s", fields: [StreamField("f", "v")]))
            let batches = try await reader.send(
                XREADGROUP(group: "g", consumer: "c", streams: [("s", ">")], count: 1, block: .milliseconds(5000)))
            #expect(batches.first?.entries.count == 1)
        }
    }

    @Test func commandTimeout() async throws {
        let options = LocalRedisServer.Options.with { $0.extraArguments = ["--enable-debug-command", "yes"] }
        try await withRedisServer(options) { server in
            let impatient = try server.makeConnection { $0.timeouts.command = .milliseconds(200) }
            let error = await #expect(throws: RedisError.self) { try await impatient.send(["DEBUG", "SLEEP", "2"]) }
            #expect(error?.code == .timeout)
            #expect(error?.commandDidNotRun == false)
            #expect(error?.message.contains("no reply from 127.0.0.1:\(server.port) within the timeout") == true, "\(String(describing: error))")
            // Once the server is awake the same connection works again (on a new socket).
            #expect(await eventually { (try? await impatient.send(PING())) == "PONG" })
        }
    }

    /// Cancelling a task blocked in XREADGROUP BLOCK wakes it at once with `.cancelled`,
    /// instead of after the block time (when it would return an empty result).
    @Test func cancellingABlockedRead() async throws {
        try await withRedisServer { server in
            let reader = try server.makeConnection()
            let admin = try server.makeConnection()
            _ = try await reader.send(XGROUPCREATE("s", group: "g", id: "$"))

            let task = Task {
                try await reader.send(XREADGROUP(group: "g", consumer: "c", streams: [("s", ">")], block: .seconds(600)))
            }
            #expect(await eventually { try await admin.blockedClients() == 1 })
            task.cancel()
            let result = await task.result
            guard case .failure(let error) = result else {
                Issue.record("a cancelled blocked read returned \(result)")
                return
            }
            #expect((error as? RedisError)?.code == .cancelled)
            // The server's side of the wait is gone too, and the connection is usable.
            #expect(await eventually { try await admin.blockedClients() == 0 })
            #expect(try await reader.send(PING()) == "PONG")

            // Cancelled before it was sent: it never reaches the server.
            let early = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await reader.send(XREADGROUP(group: "g", consumer: "c", streams: [("s", ">")], block: .seconds(600)))
            }
            let earlyResult = await early.result
            guard case .failure(let earlyError) = earlyResult else {
                Issue.record("a cancelled task's read returned \(earlyResult)")
                return
            }
            #expect((earlyError as? RedisError)?.code == .cancelled)
            #expect(try await admin.blockedClients() == 0)
        }
    }

    /// Cancelled while the server is down and the connection waits to reconnect: a RedisError
    /// with `.cancelled` (not a CancellationError from the back-off sleep), and nothing was sent.
    @Test func cancellingWhileReconnecting() async throws {
        let options = LocalRedisServer.Options.with {
            $0.appendOnly = true
            $0.appendFsync = "always"
        }
        try await withRedisServer(options) { server in
            let reader = try server.makeConnection { $0.reconnect.retryWindow = .seconds(600) }
            _ = try await reader.send(XGROUPCREATE("s", group: "g", id: "$"))
            await server.kill()

            let task = Task {
                try await reader.send(XREADGROUP(group: "g", consumer: "c", streams: [("s", ">")], block: .seconds(600)))
            }
            // Let it reach the reconnect loop (refused, back off, retry...).
            try await Task.sleep(for: .milliseconds(300))
            task.cancel()
            let result = await task.result
            guard case .failure(let error) = result else {
                Issue.record("a cancelled read returned \(result)")
                return
            }
            #expect((error as? RedisError)?.code == .cancelled, "\(error)")

            // Back up, the connection works, and the cancelled read never reached the server.
            try await server.start()
            #expect(try await reader.send(XINFOCONSUMERS("s", group: "g")).isEmpty)
        }
    }

    /// 32 concurrent tasks share a pool of 4: all succeed, and the server never sees more than 4.
    @Test func poolBoundsConnections() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool(maximumConnections: 4) { $0.clientName = "pool-test" }
            let observer = try server.makeConnection()
            let peak = Peak()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<32 {
                    group.addTask {
                        for round in 0..<5 {
                            try await pool.withConnection { connection in
                                // Hold the connection while the server blocks briefly, so tasks overlap.
                                _ = try await connection.send(["BLPOP", RedisArgument("never-\(task)"), "0.01"])
                                _ = try await connection.send(INCRBY("total", by: 1))
                                _ = try await connection.send(XADD("log", fields: [StreamField("task", "\(task)-\(round)")]))
                            }
                        }
                        let names = try await observer.clientList().filter { $0["name"] == "pool-test" }.count
                        peak.record(names)
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await observer.send(GET("total")) == Array("160".utf8))
            #expect(try await observer.send(XLEN("log")) == 160)
            let names = try await observer.clientList().filter { $0["name"] == "pool-test" }.count
            #expect((1...4).contains(names))
            #expect(peak.value <= 4)
            await pool.shutdown()
            let closed = await #expect(throws: RedisError.self) { try await pool.send(PING()) }
            #expect(closed?.code == .poolClosed)
        }
    }
}

/// The largest value recorded, from many tasks.
private final class Peak: Sendable {
    private let state = Mutex(0)
    func record(_ value: Int) { state.withLock { $0 = max($0, value) } }
    var value: Int { state.withLock { $0 } }
}
