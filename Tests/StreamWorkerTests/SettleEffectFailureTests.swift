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
}
