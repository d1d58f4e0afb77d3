import Foundation
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// The connection pool's wait queue under cancellation, and its health probe.
@Suite(.timeLimit(.minutes(1))) struct PoolTests {
    /// Connections the server has accepted since it started.
    func connectionsReceived(_ server: LocalRedisServer) async throws -> Int {
        let connection = try server.makeConnection()
        let stats = try await connection.send(INFO(section: "stats"))
        await connection.close()
        return try #require(Int(stats["total_connections_received"] ?? ""))
    }

    /// Runs `body` with a pool of one connection that another task holds until `body` returns,
    /// then checks that the connection went back to the pool (not to a cancelled waiter).
    func withOnlyConnectionHeld(_ body: (RedisConnectionPool) async throws -> Void) async throws {
        try await withRedisServer { server in
            let pool = try server.makePool(maximumConnections: 1)
            let holding = Latch()
            let release = Latch()
            let holder = Task {
                try await pool.withConnection { connection in
                    _ = try await connection.send(PING())
                    holding.open()
                    await release.wait()
                }
            }
            await holding.wait()
            try await body(pool)
            release.open()
            try await holder.value
            #expect(try await pool.send(PING()) == "PONG")
            await pool.shutdown()
        }
    }

    @Test("a task cancelled while waiting for a connection leaves the queue at once with CancellationError")
    func cancelledWaiterLeavesTheQueue() async throws {
        try await withOnlyConnectionHeld { pool in
            let waiter = Task { try await pool.send(PING()) }
            #expect(await eventually { pool.waitingCallers == 1 })
            waiter.cancel()
            // Out of the queue while the connection is still held: the cancellation, not a
            // returned connection, ended the wait.
            await #expect(throws: CancellationError.self) { try await waiter.value }
            #expect(pool.waitingCallers == 0)
        }
    }

    @Test("a task cancelled before it queues never waits")
    func alreadyCancelledWaiterDoesNotQueue() async throws {
        try await withOnlyConnectionHeld { pool in
            let waiter = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await pool.send(PING())
            }
            await #expect(throws: CancellationError.self) { try await waiter.value }
            #expect(pool.waitingCallers == 0)
        }
    }

    @Test("health probes reuse one connection")
    func probesReuseOneConnection() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            #expect(await pool.probe() == nil)
            let before = try await connectionsReceived(server)
            for _ in 0..<20 { #expect(await pool.probe() == nil) }
            // Only the counting connection of connectionsReceived itself is new.
            #expect(try await connectionsReceived(server) == before + 1)
            await pool.shutdown()
        }
    }

    @Test("a probe of a Redis loading its data says LOADING, though HELLO answers while it loads (the role check must not hide it)")
    func probeOfALoadingRedis() async throws {
        var options = LocalRedisServer.Options()
        options.extraArguments = ["--enable-debug-command", "yes"]
        try await withRedisServer(options) { server in
            let pool = try server.makePool()
            #expect(await pool.probe() == nil)
            let connection = try server.makeConnection()
            _ = try await connection.send(["DEBUG", "POPULATE", "20000"])
            _ = try await connection.send(["SAVE"])
            await connection.close()
            await server.stop()
            // The same port and data, loaded slowly (200 µs a key: about 4 s), answering between keys.
            let loading = try ChildProcess(
                try LocalRedisServer.executable(),
                ["--port", "\(server.port)", "--bind", "127.0.0.1", "--dir", server.directory, "--save", "", "--key-load-delay", "200",
                 "--loading-process-events-interval-bytes", "1024"],
                outputFile: server.directory + "/loading.out")
            let checker = try server.makeConnection { $0.reconnect.retryWindow = .zero }
            var sawLoading = false
            for _ in 0..<200 where !sawLoading {
                do {
                    _ = try await checker.send(PING())
                    break  // loaded already (about 4 s of delay): nothing checked, the expectation below fails
                } catch let error as RedisError where error.code == .loading {
                    sawLoading = true
                } catch {
                    try await Task.sleep(for: .milliseconds(10))  // not listening yet
                }
            }
            #expect(sawLoading, "never saw the server loading")
            if sawLoading {
                let error = await pool.probe()
                #expect(error?.code == .loading, "\(String(describing: error))")
            }
            await checker.close()
            await pool.shutdown()
            _ = await loading.stop(signal: SIGKILL)
        }
    }

    @Test("a probe of a Redis that is gone answers at once with the reason, and recovers with it")
    func probeOfAGoneRedis() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            #expect(await pool.probe() == nil)
            await server.stop()
            let error = await pool.probe()
            #expect(error != nil)
            try await server.start()
            #expect(await eventually { await pool.probe() == nil })
            await pool.shutdown()
        }
    }
}

/// A one-shot signal between test tasks.
final class Latch: @unchecked Sendable {
    private let lock = NSLock()
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func open() {
        lock.lock()
        isOpen = true
        let w = waiters
        waiters = []
        lock.unlock()
        for c in w { c.resume() }
    }

    func wait() async {
        await withCheckedContinuation { c in
            lock.lock()
            if isOpen {
                lock.unlock()
                c.resume()
            } else {
                waiters.append(c)
                lock.unlock()
            }
        }
    }
}
