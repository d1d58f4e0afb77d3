import Foundation
import LocalRedis
import Logging
import RedisClient
import StreamWorker
import Synchronization
import TestSupport
import Testing

/// CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
func cpuSeconds(of pid: pid_t) throws -> Double {
    let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    // Fields after the command name (which may hold spaces) start after the last ')'.
    guard let close = stat.lastIndex(of: ")") else { throw TestSupportError("unreadable /proc/\(pid)/stat") }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else {
        throw TestSupportError("unreadable /proc/\(pid)/stat")
    }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The CPU seconds a process uses over `window` of wall time.
func cpuUsed(by pid: pid_t, over window: Duration) async throws -> Double {
    let before = try cpuSeconds(of: pid)
    try await Task.sleep(for: window)
    return try cpuSeconds(of: pid) - before
}

/// A value a line of the child's output gives (`name=value`).
func outputValue(_ child: ChildProcess, _ name: String) -> String? {
    child.output.split(separator: "\n").last(where: { $0.hasPrefix(name + "=") }).map { String($0.dropFirst(name.count + 1)) }
}

/// Starts a worker that cannot create its group, then drains or cancels it half a second later;
/// returns how long `run()` took to return after that.
func startUpEnds(_ pool: RedisConnectionPool, drains: Bool) async throws -> Duration {
    var logger = Logger(label: "test-worker")
    logger.logLevel = .critical
    let worker = StreamWorker(client: pool, subscriptions: [Subscription(stream: "s", group: "g") { _ in .done }], logger: logger)
    let task = Task { try await worker.run() }
    try await Task.sleep(for: .milliseconds(500))
    let stopped = ContinuousClock.now
    if drains { worker.drain() } else { task.cancel() }
    _ = await task.result
    return ContinuousClock.now - stopped
}

@Suite("Cancellation ends every loop; waiting costs no CPU")
struct CancellationTests {
    @Test("a cancelled worker returns within 1 s, then its process uses no CPU", arguments: ["each", "batch"])
    func cancelledWorkerStops(handler: String) async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "cancel-\(handler)"
            try await publish(pool, stream: stream, count: 20_000)
            // Handlers in flight, retries waiting, entries read ahead, readers and the reclaimer
            // running when the cancellation comes.
            let probe = try startProbe(
                server, stream: stream, group: "g",
                extra: [
                    "--handler", handler, "--handler-delay-ms", "20", "--lease-ms", "1000", "--effects-key", "effects",
                    "--cancel-after-ms", "2000", "--linger-ms", "8000",
                ])
            defer { probe.signal(SIGKILL) }
            #expect(await eventually(timeout: .seconds(30)) { outputValue(probe, "cancelled_returned_ms") != nil })
            let returned = try #require(outputValue(probe, "cancelled_returned_ms").flatMap { Int($0) })
            #expect(returned <= 1000, "the cancelled worker took \(returned) ms to return")
            #expect(try await effectCounts(pool, "effects").count > 0, "it was working when cancelled")
            let cpu = try await cpuUsed(by: probe.pid, over: .seconds(5))
            #expect(cpu < 0.25, "a cancelled worker's process used \(cpu) s of CPU in 5 s")
        }
    }

    @Test("a drain or a cancellation during start-up with Redis unreachable ends run() within 2 s")
    func startUpEndsOnDrainAndCancellation() async throws {
        let port = try LocalRedisServer.freePort()
        var configuration = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port))
        configuration.reconnect.retryWindow = .seconds(30)
        let pool = try RedisConnectionPool(configuration: configuration)
        defer { Task { await pool.shutdown() } }
        for drains in [true, false] {
            let took = try await startUpEnds(pool, drains: drains)
            #expect(took < .seconds(2), "start-up took \(took) to end on \(drains ? "a drain" : "cancellation")")
        }
    }

    @Test("a drain during start-up with a wrong password ends run() within 2 s")
    func startUpWithWrongPassword() async throws {
        var options = LocalRedisServer.Options()
        options.password = "right"
        try await withRedisServer(options) { server in
            var configuration = server.configuration
            configuration.authentication = .init(password: "wrong")
            let pool = try RedisConnectionPool(configuration: configuration)
            let took = try await startUpEnds(pool, drains: true)
            #expect(took < .seconds(2), "start-up took \(took) to end on a drain")
            await pool.shutdown()
        }
    }

    @Test("Redis killed under a worker: the worker waits using little CPU and resumes when Redis returns")
    func redisDownCostsNoCPU() async throws {
        var options = LocalRedisServer.Options()
        options.appendOnly = true
        options.appendFsync = "always"
        try await withRedisServer(options) { server in
            let pool = try server.makePool()
            let stream = "down"
            let first = try await publish(pool, stream: stream, count: 200)
            let probe = try startProbe(server, stream: stream, group: "g", extra: ["--lease-ms", "1000", "--effects-key", "effects"])
            defer { probe.signal(SIGKILL) }
            #expect(await eventually { try await effectCounts(pool, "effects").count == first.count })
            await server.kill()
            try await Task.sleep(for: .seconds(1))
            let cpu = try await cpuUsed(by: probe.pid, over: .seconds(5))
            #expect(cpu < 0.5, "the worker used \(cpu) s of CPU in 5 s while Redis was down")
            try await server.start()
            let second = try await publish(pool, stream: stream, count: 200)
            #expect(await eventually(timeout: .seconds(60)) { try await effectCounts(pool, "effects").count == first.count + second.count })
        }
    }

    @Test("a drain with Redis down ends at the drain deadline, with exit status 0")
    func drainWithRedisDown() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "drain-down"
            try await publish(pool, stream: stream, count: 2000)
            let probe = try startProbe(
                server, stream: stream, group: "g",
                extra: ["--handler-delay-ms", "200", "--drain-deadline-ms", "2000", "--effects-key", "effects"])
            defer { probe.signal(SIGKILL) }
            #expect(await eventually { try await effectCounts(pool, "effects").count > 0 })
            await server.kill()
            let stopped = ContinuousClock.now
            probe.signal(SIGTERM)
            let status = await probe.waitForExit(timeout: .seconds(20))
            let took = ContinuousClock.now - stopped
            #expect(status == 0)
            #expect(took < .seconds(6), "the drain took \(took) (deadline 2 s)")
        }
    }

    @Test("after a cancellation no new handler call starts, even with entries read ahead and handlers that ignore it")
    func cancelledLanesCallNoHandler() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await publish(pool, stream: "lanes", count: 400)
            let started = Atomic<Int>(0)
            // A handler that ignores cancellation: its wait runs in a task the cancellation does
            // not reach.
            let subscription = Subscription(stream: "lanes", group: "g") { _ in
                started.add(1, ordering: .relaxed)
                await Task.detached { try? await Task.sleep(for: .milliseconds(50)) }.value
                return .done
            }
            let worker = RunningWorker(
                pool: pool, configuration: WorkerConfiguration(maxInFlight: 2, readCount: 100, prefetch: 200), subscriptions: [subscription])
            #expect(await eventually(timeout: .seconds(10)) { started.load(ordering: .relaxed) >= 4 })
            worker.task.cancel()
            let atCancel = started.load(ordering: .relaxed)
            _ = await worker.task.result
            try await Task.sleep(for: .milliseconds(300))
            let after = started.load(ordering: .relaxed)
            // At most the lanes that were between taking an entry and calling its handler.
            #expect(after - atCancel <= 2, "\(after - atCancel) handler calls started after the cancellation")
            #expect(try await pendingCount(pool, stream: "lanes", group: "g") > 0, "the unhandled entries stay pending")
        }
    }
}
