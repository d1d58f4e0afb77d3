import FaultProxy
import Foundation
import LocalRedis
import RedisClient
@testable import StreamWorker
import TestSupport
import Testing

/// "A settle whose reply was lost makes an already-applied entry come back, and it is
/// suppressed, never applied twice", broken for real: the worker reaches redis-server through a
/// TCP proxy that forwards the first settle script call and holds its reply back. Redis has run
/// the script while the worker has no answer; then the connection is reset, or the worker
/// process is killed.
@Suite("A settle whose reply was lost")
struct LostSettleReplyTests {
    static let stream = "s"

    @Test("the connection is reset after Redis ran the settle: the retry finds the entries settled and applies nothing")
    func connectionReset() async throws {
        try await Self.withFirstSettleHeld { server, pool, ids, proxy in
            // A command timeout longer than the test: the reset, not the client, ends the wait
            // (with the default 5 s, a first run saw the settle time out before the reset came).
            let workerPool = try server.makePool {
                $0.endpoint = .tcp(host: "127.0.0.1", port: proxy.port)
                $0.timeouts.command = .seconds(120)
            }
            let worker = RunningWorker(
                pool: workerPool, configuration: WorkerConfiguration(),
                subscriptions: [Subscription(stream: Self.stream, group: "g", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually { proxy.repliesWithheld == 1 })
            let stats = worker.worker.stats
            // The settler waits for that reply: what shows in Redis beyond what it counted is the
            // held call's work.
            let applied = try await effectCounts(pool, "effects").count
            #expect(applied > stats[.processed], "the held settle applied nothing")
            #expect(await proxy.resetConnections() != nil)
            #expect(await eventually { stats[.processed] + stats[.alreadySettled] == ids.count })
            try await worker.stop()
            #expect(try await pendingCount(pool, stream: Self.stream, group: "g") == 0)
            // The retried settle found the held batch settled: the reply really was lost after the script ran.
            #expect(stats[.alreadySettled] > 0 && stats[.alreadySettled] <= applied, "\(stats.snapshot)")
            #expect(stats[.duplicates] == 0 && stats[.foreignSettlesRefused] == 0, "\(stats.snapshot)")
        }
    }

    @Test("the worker process is SIGKILLed after Redis ran its settle, before the reply came: nothing is left to redo")
    func killedAwaitingReply() async throws {
        try await Self.withFirstSettleHeld { _, pool, ids, proxy in
            let victim = try ChildProcess(
                try ordershopExecutable(),
                [
                    "worker-probe", "--url", "redis://127.0.0.1:\(proxy.port)", "--stream", Self.stream, "--group", "g",
                    "--effects-key", "effects", "--lease-ms", "1000",
                ])
            #expect(await eventually { proxy.repliesWithheld == 1 })
            victim.signal(SIGKILL)
            _ = await victim.waitForExit()

            // The settle was one step: every applied entry is acked, and every entry not acked
            // (behind the held call in the victim's settler) is pending, unapplied.
            let applied = try await effectCounts(pool, "effects").count
            let pending = try await pendingCount(pool, stream: Self.stream, group: "g")
            #expect(applied > 0 && applied + pending == ids.count, "applied \(applied), pending \(pending)")
            let rescuer = RunningWorker(
                pool: pool, configuration: .init(lease: .seconds(1)),
                subscriptions: [Subscription(stream: Self.stream, group: "g", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually { try await pendingCount(pool, stream: Self.stream, group: "g") == 0 })
            try await rescuer.stop()
            // Only the unsettled entries came back; the held call's entries never did.
            let stats = rescuer.worker.stats
            #expect(stats[.reclaimed] == pending, "\(stats.snapshot)")
            #expect(stats[.duplicates] == 0 && stats[.alreadySettled] == 0, "\(stats.snapshot)")
        }
    }

    /// Publishes 20 events to ``stream`` and runs `body` with a proxy to the server that holds
    /// the reply to the first call of the settle script (its SHA-1 is in every EVALSHA of it);
    /// then checks that each event's effect was applied exactly once and none was dead-lettered.
    /// The script is loaded first: a call answered NOSCRIPT did not run, and holding that one
    /// would lose no settle.
    private static func withFirstSettleHeld(
        _ body: (LocalRedisServer, RedisConnectionPool, [String], TCPProxy) async throws -> Void
    ) async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let ids = try await publish(pool, stream: stream, count: 20)
            try await pool.send(["SCRIPT", "LOAD", RedisArgument(WorkerScripts.settle.source)])
            let proxy = try TCPProxy(targetPort: server.port)
            defer { proxy.stop() }
            proxy.holdReply(afterSending: Array(WorkerScripts.settle.sha1.utf8))
            try await body(server, pool, ids, proxy)

            let counts = try await effectCounts(pool, "effects")
            #expect(Set(counts.keys) == Set(ids), "no event lost")
            #expect(counts.values.allSatisfy { $0 == 1 }, "each effect applied once: \(counts.values.sorted())")
            #expect(try await DeadLetters(client: pool, stream: stream, group: "g").list().isEmpty)
        }
    }
}
