import Foundation
import RedisClient
import StreamWorker
import TestSupport
import Testing

@Suite("Settle with a failing effect")
struct SettleEffectFailureTests {
    @Test(
        "an entry whose effect fails mid-batch is dead-lettered; the others of its settle call are applied and acked once",
        arguments: SettleMode.allCases)
    func failingEffectMidBatch(mode: SettleMode) async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{fail}_created"
            try await pool.send(["HSET", "a-hash", "field", "1"])
            // Published before the worker starts and handled by a batch handler: one read, one
            // handler call, its results queued for the settler together. The settler may take
            // the first alone (it waits for one), so the failing entry is in the middle of the
            // rest, with entries before it in its settle call.
            let ids = try await publish(pool, stream: stream, count: 20)
            let failing = ids[10]
            // Each entry INCRs its own counter; the failing one then INCRs a hash (WRONGTYPE).
            let worker = RunningWorker(
                pool: pool, configuration: .init(maxInFlight: 64, readCount: 100, settleMode: mode),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { deliveries in
                        deliveries.map { delivery in
                            var effects: [[RedisArgument]] = [["INCR", RedisArgument("counter:" + delivery.eventID)]]
                            if delivery.eventID == failing { effects.append(["INCR", "a-hash"]) }
                            return .success(.done(effects: effects))
                        }
                    }
                ])
            let dlq = DeadLetters(client: pool, stream: stream, group: "g")
            #expect(
                await eventually {
                    guard try await pendingCount(pool, stream: stream, group: "g") == 0 else { return false }
                    return try await !dlq.list().isEmpty
                })
            try await worker.stop()

            for id in ids {
                // The failing entry's first effect ran before its second failed: once, too.
                let key = RedisArgument("counter:" + id)
                let counter = try await pool.send(RawCommand(["GET", key], keys: [key], readOnly: true)).string
                #expect(counter == "1", "counter of \(id == failing ? "the failing entry" : "an entry"): \(counter ?? "nil")")
            }
            let letters = try await dlq.list()
            #expect(letters.count == 1)
            let letter = try #require(letters.first)
            #expect(letter.fields["event_id"] == failing)
            #expect(letter.reason == "effects failed")
            #expect(letter.error.hasPrefix("WRONGTYPE"), "\(letter.error)")
            #expect(letter.error.contains("effect 2 of 2 failed; 1 applied before it"), "\(letter.error)")
            #expect(worker.worker.stats[.processed] == ids.count - 1)
        }
    }

    @Test("an effect refused for OOM fails the whole settle transiently: retried until memory returns, nothing dead-lettered, each effect applied once")
    func effectRefusedForOutOfMemory() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await publish(pool, stream: "oom", count: 20)
            // Handlers hold their entries until memory has run out: the settles meet the OOM
            // (a worker started out of memory would not get as far as reading).
            let open = LockedValue(false)
            let counting = countingHandler(effectsKey: "effects")
            let worker = RunningWorker(
                pool: pool, configuration: .init(),
                subscriptions: [
                    Subscription(stream: "oom", group: "g") { delivery in
                        while !open.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
                        return try await counting(delivery)
                    }
                ])
            #expect(await eventually { worker.worker.stats[.delivered] == 20 })
            let failedBefore = try await failedScriptCalls(pool)
            _ = try await pool.send(["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            _ = try await pool.send(["CONFIG", "SET", "maxmemory", "1"])
            open.withLock { $0 = true }
            #expect(await eventually { try await failedScriptCalls(pool) > failedBefore })
            _ = try await pool.send(["CONFIG", "SET", "maxmemory", "0"])
            #expect(
                await eventually {
                    guard try await effectCounts(pool, "effects").count == 20 else { return false }
                    return try await pendingCount(pool, stream: "oom", group: "g") == 0
                })
            try await worker.stop()
            let counts = try await effectCounts(pool, "effects")
            #expect(counts.count == 20 && counts.values.allSatisfy { $0 == 1 }, "effects: \(counts)")
            let letters = try await DeadLetters(client: pool, stream: "oom", group: "g").list()
            #expect(letters.isEmpty, "dead letters: \(letters)")
        }
    }

    /// Script calls Redis answered with an error (INFO commandstats, failed_calls).
    private func failedScriptCalls(_ pool: any RedisClientProtocol) async throws -> Int {
        let info = try await pool.send(RawCommand(["INFO", "commandstats"], keys: [], readOnly: true)).string ?? ""
        return info.split(whereSeparator: \.isNewline).reduce(0) { total, line in
            guard line.hasPrefix("cmdstat_eval"), let field = line.split(separator: ",").first(where: { $0.hasPrefix("failed_calls=") })
            else { return total }
            return total + (Int(field.dropFirst("failed_calls=".count)) ?? 0)
        }
    }
}
