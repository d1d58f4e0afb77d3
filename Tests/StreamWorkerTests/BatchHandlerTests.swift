import Foundation
import RedisClient
import StreamWorker
import TestSupport
import Testing

@Suite("Batch handlers")
struct BatchHandlerTests {
    @Test("a batch handler's entries settle one by one: a failure is retried alone, a malformed one is dead-lettered, the rest applied once")
    func entriesSettleOnTheirOwn() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{batch}_created"
            let ids = try await publish(pool, stream: stream, count: 40) { i in i == 7 ? "{not json" : #"{"n":\#(i)}"# }
            let flaky = ids[3]
            let malformed = ids[7]
            let batches = Recorder<[String]>()
            struct Flaky: Error {}
            let worker = RunningWorker(
                pool: pool,
                configuration: .init(lease: .seconds(2), retryBackoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(50))),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { deliveries in
                        batches.append(deliveries.map(\.eventID))
                        return deliveries.map { delivery in
                            Result {
                                struct Entity: Decodable { var n: Int }
                                _ = try delivery.decodeJSON(Entity.self)
                                if delivery.eventID == flaky && delivery.deliveryCount < 3 { throw Flaky() }
                                return .done(effects: [["HINCRBY", "effects", RedisArgument(delivery.eventID), "1"]])
                            }
                        }
                    }
                ])
            let dlq = DeadLetters(client: pool, stream: stream, group: "g")
            #expect(
                await eventually {
                    let applied = try await effectCounts(pool, "effects").count
                    let letters = try await dlq.list().count
                    return applied == 39 && letters == 1
                })
            try await worker.stop()

            var expected = Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) })
            expected[malformed] = nil
            #expect(try await effectCounts(pool, "effects") == expected)
            let letter = try #require(try await dlq.list().first)
            #expect(letter.fields["event_id"] == malformed)
            #expect(letter.reason.hasPrefix("malformed"))
            // Read batches went to the handler whole; each retry of the flaky entry came alone.
            let calls = batches.all
            #expect(calls.contains { $0.count > 1 })
            #expect(calls.filter { $0 == [flaky] }.count == 2)
            #expect(calls.flatMap { $0 }.filter { $0 == flaky }.count == 3)
            #expect(worker.worker.stats[.retried] == 2)
            #expect(worker.worker.stats[.processed] == 39, "\(worker.worker.stats.snapshot)")
            #expect(try await pendingCount(pool, stream: stream, group: "g") == 0)
        }
    }

    @Test("a batch handler that returns the wrong number of results has that batch's entries retried, not acked")
    func resultCountMismatchRetries() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "mismatch"
            let ids = try await publish(pool, stream: stream, count: 10)
            let calls = LockedValue(0)
            let worker = RunningWorker(
                pool: pool,
                configuration: .init(readCount: 10, lease: .seconds(2), retryBackoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(50))),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { deliveries in
                        let first = calls.withLock { c in
                            c += 1
                            return c == 1
                        }
                        // The first call drops a result: none of that call's entries may be acked.
                        let results: [Result<HandlerOutcome, any Error>] = deliveries.map { d in
                            .success(.done(effects: [["HINCRBY", "effects", RedisArgument(d.eventID), "1"]]))
                        }
                        return first ? Array(results.dropLast()) : results
                    }
                ])
            #expect(await eventually { try await effectCounts(pool, "effects").count == 10 })
            try await worker.stop()
            #expect(try await effectCounts(pool, "effects") == Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) }))
            #expect(worker.worker.stats[.failed] >= 1)
            #expect(worker.worker.stats[.processed] == 10)
        }
    }
}
