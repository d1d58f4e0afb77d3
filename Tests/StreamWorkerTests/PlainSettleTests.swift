import Foundation
import RedisClient
import StreamWorker
import TestSupport
import Testing

@Suite("Plain settle")
struct PlainSettleTests {
    @Test("plain mode applies the effects a handler returns with the XACK, without markers")
    func effectsApplied() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "p"
            let ids = try await publish(pool, stream: stream, count: 200)
            // Half return effects, half none: both kinds in the same settles.
            let withEffects = Set(ids.enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
            let counting = countingHandler(effectsKey: "effects")
            let worker = RunningWorker(
                pool: pool, configuration: .init(settleMode: .plain),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { delivery in
                        withEffects.contains(delivery.eventID) ? try await counting(delivery) : .done
                    }
                ])
            #expect(await eventually { worker.worker.stats[.processed] == 200 })
            try await worker.stop()
            #expect(try await effectCounts(pool, "effects") == Dictionary(uniqueKeysWithValues: withEffects.map { ($0, 1) }))
            #expect(try await pendingCount(pool, stream: stream, group: "g") == 0)
            #expect(try await pool.send(["KEYS", "idem:*"]).array?.isEmpty == true)
        }
    }
}
