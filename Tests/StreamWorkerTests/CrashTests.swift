import Foundation
import LocalRedis
import RedisClient
import StreamWorker
import TestSupport
import Testing

/// Guarantees broken for real: processes are SIGKILLed, SIGSTOPped and SIGTERMed.
@Suite("Worker processes killed, paused and stopped")
struct CrashTests {
    @Test("a worker SIGKILLed mid-handler: another reclaims and processes every entry, none lost, each applied once")
    func killedMidHandler() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{customer}_created"
            // Enough work (about 9 s for the victim) that it still holds entries when the kill
            // comes on a loaded machine: with 300, and then with 1,000 (3 s) beside the cluster
            // suites of a fresh-clone CI run, the test's poll came late and the victim had
            // finished before the kill.
            let ids = try await publish(pool, stream: stream, count: 3000)
            let victim = try startProbe(
                server, stream: stream, group: "crm",
                extra: ["--lease-ms", "1000", "--handler-delay-ms", "50", "--max-in-flight", "16", "--effects-key", "effects"])
            // Kill it while it holds entries in its handlers.
            let victimName = try #require(await probeConsumer(victim))
            let holding = await eventually {
                let summary = try await pool.send(XPENDING(RedisArgument(stream), group: "crm"))
                let applied = try await effectCounts(pool, "effects").count
                return (summary.consumers[victimName] ?? 0) > 0 && applied > 0
            }
            #expect(holding)
            victim.signal(SIGKILL)
            _ = await victim.waitForExit()
            let orphaned = try await pool.send(XPENDING(RedisArgument(stream), group: "crm")).consumers[victimName] ?? 0
            #expect(orphaned > 0, "the kill must hit a worker holding entries")

            let rescuer = RunningWorker(
                pool: pool, configuration: .init(lease: .seconds(1)),
                subscriptions: [Subscription(stream: stream, group: "crm", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually(timeout: .seconds(60)) { try await effectCounts(pool, "effects").count == ids.count })
            #expect(await eventually { try await pendingCount(pool, stream: stream, group: "crm") == 0 })
            try await rescuer.stop()
            let counts = try await effectCounts(pool, "effects")
            #expect(Set(counts.keys) == Set(ids), "no event lost")
            #expect(counts.values.allSatisfy { $0 == 1 }, "each effect applied once")
            #expect(rescuer.worker.stats[.reclaimed] >= orphaned)
        }
    }

    @Test("a worker SIGSTOPped past its lease: another handles its entries; woken, it neither applies nor acks them")
    func pausedPastLease() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{order}_created"
            let ids = try await publish(pool, stream: stream, count: 8)
            // The zombie reads everything, then sits in 20 s handlers: long enough that it is
            // stopped before any settles, even on a loaded machine (with 3 s, a CI run saw all 8
            // handlers start only after they had finished and settled, and nothing to reclaim;
            // with 8 s, loaded full-suite runs still found the zombie settled, 4 times in 13).
            let zombie = try startProbe(
                server, stream: stream, group: "billing",
                extra: [
                    "--lease-ms", "1000", "--handler-delay-ms", "20000", "--drain-deadline-ms", "40000", "--effects-key", "effects", "--invocations-key",
                    "invocations",
                ])
            let zombieName = try #require(await probeConsumer(zombie))
            #expect(await eventually {
                try await pool.send(XPENDING(RedisArgument(stream), group: "billing")).consumers[zombieName] == ids.count
            })
            #expect(await eventually { try await effectCounts(pool, "invocations").count == ids.count })
            zombie.signal(SIGSTOP)
            try #require(try await effectCounts(pool, "effects").isEmpty, "the zombie settled before it was stopped: the test's premise did not hold")

            let other = RunningWorker(
                pool: pool, configuration: .init(lease: .seconds(1)),
                subscriptions: [Subscription(stream: stream, group: "billing", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually(timeout: .seconds(60)) { try await effectCounts(pool, "effects").count == ids.count })
            #expect(await eventually { try await pendingCount(pool, stream: stream, group: "billing") == 0 })
            #expect(other.worker.stats[.reclaimed] == ids.count)

            // Wake the zombie and ask it to drain: its handlers finish, and every settle is refused.
            zombie.signal(SIGCONT)
            zombie.signal(SIGTERM)
            // Its handlers end 20 s after they started (within its 40 s drain); then it exits.
            #expect(await zombie.waitForExit(timeout: .seconds(60)) == 0)
            try await other.stop()
            let stats = probeStats(zombie)
            // Refused either as foreign-owned or as settled by another consumer already: never applied, never acked.
            #expect((stats["foreign_settles_refused"] ?? 0) + (stats["already_settled"] ?? 0) == ids.count, "\(zombie.output)")
            #expect(stats["processed"] == 0)
            let counts = try await effectCounts(pool, "effects")
            #expect(counts.count == ids.count && counts.values.allSatisfy { $0 == 1 })
            #expect(try await pendingCount(pool, stream: stream, group: "billing") == 0)
        }
    }

    @Test("a handler that runs three leases long is not stolen while its worker lives")
    func slowHandlerKeepsItsLease() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "slow"
            let ids = try await publish(pool, stream: stream, count: 4)
            let slow = try startProbe(
                server, stream: stream, group: "g",
                extra: ["--lease-ms", "2000", "--handler-delay-ms", "6500", "--effects-key", "effects", "--invocations-key", "invocations"])
            let slowName = try #require(await probeConsumer(slow))
            // 60 s: in one full-suite run the probe had not read its four entries within the
            // default wait (they stay pending for 6.5 s once read, so a longer wait misses nothing).
            #expect(await eventually(timeout: .seconds(60)) { try await pool.send(XPENDING(RedisArgument(stream), group: "g")).consumers[slowName] == ids.count })
            // A second worker with the same lease, reclaiming all the while.
            let thief = RunningWorker(
                pool: pool, configuration: .init(lease: .seconds(2)),
                subscriptions: [Subscription(stream: stream, group: "g", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually(timeout: .seconds(60)) { try await effectCounts(pool, "effects").count == ids.count })
            try await thief.stop()
            slow.signal(SIGTERM)
            #expect(await slow.waitForExit() == 0)
            #expect(thief.worker.stats[.reclaimed] == 0)
            #expect(try await effectCounts(pool, "invocations").values.allSatisfy { $0 == 1 }, "no handler ran twice")
            #expect(probeStats(slow)["processed"] == ids.count)
        }
    }

    @Test("SIGTERM with handlers in flight: they finish and are acked, exit 0, and the consumer leaves the group")
    func gracefulDrain() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "drain"
            let ids = try await publish(pool, stream: stream, count: 10)
            let worker = try startProbe(
                server, stream: stream, group: "g",
                // 12 s handlers: with 1.5 s, a CI run under full parallel load once saw some finish between the
                // last invocation and the pending check, so the premise below did not hold; with 6 s, a
                // whole-suite run on 2026-12-05 did too.
                extra: ["--handler-delay-ms", "12000", "--drain-deadline-ms", "30000", "--effects-key", "effects", "--invocations-key", "invocations"])
            let name = try #require(await probeConsumer(worker))
            #expect(await eventually { try await effectCounts(pool, "invocations").count == ids.count })
            try #require(try await pendingCount(pool, stream: stream, group: "g") == ids.count, "all in flight when the signal comes")
            worker.signal(SIGTERM)
            let status = await worker.waitForExit(timeout: .seconds(40))
            #expect(status == 0, "\(worker.output)")
            #expect(try await pendingCount(pool, stream: stream, group: "g") == 0)
            #expect(try await effectCounts(pool, "effects").count == ids.count)
            let consumers = try await pool.send(XINFOCONSUMERS(RedisArgument(stream), group: "g")).map(\.name)
            #expect(!consumers.contains(name))
        }
    }

    @Test("SIGTERM with handlers past the drain deadline: they are abandoned, their entries stay pending, the consumer stays")
    func drainDeadline() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "stuck"
            let ids = try await publish(pool, stream: stream, count: 3)
            let worker = try startProbe(
                server, stream: stream, group: "g",
                extra: ["--handler-delay-ms", "600000", "--drain-deadline-ms", "1000", "--effects-key", "effects", "--invocations-key", "invocations"])
            let name = try #require(await probeConsumer(worker))
            #expect(await eventually { try await effectCounts(pool, "invocations").count == ids.count })
            worker.signal(SIGTERM)
            // Exits although its handlers would run for ten minutes.
            let status = await worker.waitForExit(timeout: .seconds(60))
            #expect(status == 0, "\(worker.output)")
            #expect(try await pendingCount(pool, stream: stream, group: "g") == ids.count, "left for another worker")
            #expect(try await effectCounts(pool, "effects").isEmpty)
            let consumers = try await pool.send(XINFOCONSUMERS(RedisArgument(stream), group: "g")).map(\.name)
            #expect(consumers.contains(name), "a consumer holding entries never leaves its group")
        }
    }

    @Test("two worker processes share the work and every effect is applied once")
    func twoProcessesShare() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "shared"
            let extra = ["--handler-delay-ms", "20", "--max-in-flight", "8", "--effects-key", "effects"]
            let a = try startProbe(server, stream: stream, group: "g", extra: extra)
            let b = try startProbe(server, stream: stream, group: "g", extra: extra)
            // Both are reading before the work arrives.
            #expect(await eventually { a.output.contains("worker started") && b.output.contains("worker started") })
            let ids = try await publish(pool, stream: stream, count: 400)
            #expect(await eventually(timeout: .seconds(60)) { try await effectCounts(pool, "effects").count == ids.count })
            a.signal(SIGTERM)
            b.signal(SIGTERM)
            #expect(await a.waitForExit() == 0, "\(a.output)")
            #expect(await b.waitForExit() == 0, "\(b.output)")
            let pa = probeStats(a)["processed"] ?? 0
            let pb = probeStats(b)["processed"] ?? 0
            #expect(pa > 0 && pb > 0, "both handled some: \(pa) and \(pb)")
            #expect(pa + pb == ids.count)
            #expect(try await effectCounts(pool, "effects").values.allSatisfy { $0 == 1 })
        }
    }
}
