import RedisClient
import StreamWorker
import TestSupport
import Testing

/// When the reclaimer takes over a dead consumer's entries: while a backlog lasts (not after it),
/// and not while the subscription's breaker holds its handlers back.
@Suite(.timeLimit(.minutes(3))) struct ReclaimerTests {
    /// Under a backlog the readers always wait for read-ahead room, and a reclaimer that claimed
    /// only into room free at that instant never ran until the backlog was gone (a killed
    /// worker's entries waited 263 s in a 300-s replicated chaos run, seed 1303).
    @Test("entries of a dead consumer are reclaimed and handled while a backlog is still being drained")
    func reclaimedDuringBacklog() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "backlog"
            let total = 4000
            try await publish(pool, stream: stream, count: total)
            let handled = Recorder<String>()
            // Slow enough that the backlog outlasts the lease many times over: 4 handlers of
            // 4 ms take at least 4 s for 4,000 entries, the lease is 300 ms.
            let worker = RunningWorker(
                pool: pool,
                configuration: .init(maxInFlight: 4, readCount: 4, prefetch: 8, lease: .milliseconds(300), settleMode: .plain),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { delivery in
                        try await Task.sleep(for: .milliseconds(4))
                        handled.append(delivery.id)
                        return .done
                    }
                ])
            #expect(await eventually(timeout: .seconds(60)) { handled.all.count >= 200 })
            // A consumer that reads five entries and dies: they stay pending to it, idle.
            let dead = try await pool.send(XREADGROUP(group: "g", consumer: "dead", streams: [(stream, ">")], count: 5))[0].entries.map(\.id)
            try #require(dead.count == 5)
            #expect(await eventually(timeout: .seconds(120)) { handled.all.count >= total })
            try await worker.stop()

            let order = handled.all
            #expect(order.count == total, "each entry handled once (plain mode, no crash)")
            #expect(Set(order).count == total)
            let lastDead = try #require(dead.compactMap { order.firstIndex(of: $0) }.max())
            // Taken over within a few reclaim passes of the lease running out, so well over a
            // thousand backlog entries are handled after them; with the starved reclaimer
            // they came last (index 3,995 and up).
            #expect(lastDead < total - 1000, "the dead consumer's last entry was handled at position \(lastDead) of \(total)")
            #expect(try await pendingCount(pool, stream: stream, group: "g") == 0)
        }
    }

    /// An entry taken over behind an open breaker only waits there, one delivery more: across
    /// worker deaths during an outage such entries reached the delivery limit and were
    /// dead-lettered unhandled (127 in a 300-s chaos run, seed 1303).
    @Test("while the breaker is open after a downstream failure, a dead consumer's idle entries stay where they are")
    func noReclaimBehindOpenBreaker() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "outage"
            try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "g", id: "0", makeStream: true))
            try await publish(pool, stream: stream, count: 3)
            let dead = try await pool.send(XREADGROUP(group: "g", consumer: "dead", streams: [(stream, ">")], count: 3))[0].entries.map(\.id)
            try #require(dead.count == 3)
            try await publish(pool, stream: stream, count: 1)
            let calls = Recorder<String>()
            // The downstream is down: the first call opens the breaker for 30-60 s.
            let lease = Duration.seconds(3)
            let worker = RunningWorker(
                pool: pool,
                configuration: .init(
                    lease: lease, unavailableBackoff: Backoff(initial: .seconds(60), maximum: .seconds(60)), settleMode: .plain,
                    drainDeadline: .milliseconds(500)),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { delivery in
                        calls.append(delivery.id)
                        throw DeliveryError.unavailable("downstream down")
                    }
                ])
            // Until the breaker is open the dead consumer's entries are kept fresh (XCLAIM to
            // itself, IDLE 0, JUSTID: its delivery count unchanged), so that taking them over
            // before then (legitimate: a slow start on a loaded machine) cannot happen.
            let touch = XCLAIM(RedisArgument(stream), group: "g", consumer: "dead", ids: dead, idle: .zero, justID: true)
            #expect(
                await eventually {
                    _ = try await pool.send(touch)
                    return calls.all.count == 1
                })
            _ = try await pool.send(touch)
            // Idle past the lease after 3 s; the reclaimer looks every 600 ms and has room (one
            // entry held). Six seconds: about five passes after that.
            try await Task.sleep(for: lease * 2)
            let pending = try await pool.send(XPENDINGDetail(RedisArgument(stream), group: "g", count: 10))
            let owners = Dictionary(uniqueKeysWithValues: pending.map { ($0.id, ($0.consumer, $0.deliveryCount)) })
            for id in dead {
                #expect(owners[id]?.0 == "dead", "entry \(id) is pending to \(owners[id]?.0 ?? "nobody")")
                #expect(owners[id]?.1 == 1, "entry \(id) was delivered \(owners[id]?.1 ?? 0) times")
            }
            #expect(calls.all.count == 1, "no handler call while the breaker is open")
            try await worker.stop()
        }
    }
}
