import Foundation
import RedisClient
import StreamWorker
import Synchronization
import TestSupport
import Testing

@Suite("dlq replay re-delivers to one group, as the same events")
struct ReplayTests {
    /// A handler that rejects the entries named in `rejecting` as malformed (until cleared),
    /// records what it saw, and commits a counted effect per idempotency key.
    final class Handler: Sendable {
        let rejecting: Mutex<Set<String>>
        let seen = Mutex<[Delivery]>([])
        let effectsKey: String

        init(rejecting: Set<String>, effectsKey: String) {
            self.rejecting = Mutex(rejecting)
            self.effectsKey = effectsKey
        }

        var handler: StreamHandler {
            { delivery in
                self.seen.withLock { $0.append(delivery) }
                let entity = delivery.string("entity") ?? ""
                if self.rejecting.withLock({ $0.contains(entity) }) { throw MalformedEvent("rejected \(entity)") }
                return .done(effects: [["HINCRBY", RedisArgument(self.effectsKey), RedisArgument(delivery.idempotencyKey), "1"]])
            }
        }
    }

    @Test("a replay reaches its group only; an entry without event_id is still the same event (same id, same idempotency key)")
    func replayOneGroupOnly() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{order}_created"
            // One entry with an event id, one without.
            let withID = try #require(try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("event_id", "e-1"), StreamField("entity", "a")])))
            let withoutID = try #require(try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("entity", "b")])))
            let crm = Handler(rejecting: ["a", "b"], effectsKey: "crm-effects")
            let billing = Handler(rejecting: [], effectsKey: "billing-effects")
            let worker = RunningWorker(
                pool: pool, configuration: .init(lease: .seconds(2)),
                subscriptions: [
                    Subscription(stream: stream, group: "crm", handler: crm.handler),
                    Subscription(stream: stream, group: "billing", handler: billing.handler),
                ])
            let dlq = DeadLetters(client: pool, stream: stream, group: "crm")
            #expect(await eventually {
                let letters = try await dlq.list().count
                let applied = try await effectCounts(pool, "billing-effects").count
                return letters == 2 && applied == 2
            })
            let original = crm.seen.withLock { $0 }
            // CRM is fixed; its dead letters are replayed.
            crm.rejecting.withLock { $0 = [] }
            #expect(try await dlq.replay().ids.count == 2)
            #expect(await eventually { try await effectCounts(pool, "crm-effects").count == 2 })
            try await Task.sleep(for: .milliseconds(500))
            try await worker.stop()

            let replayed = crm.seen.withLock { Array($0.dropFirst(original.count)) }
            #expect(replayed.count == 2)
            for delivery in replayed {
                let first = try #require(original.first { $0.string("entity") == delivery.string("entity") })
                #expect(delivery.stream == stream)
                #expect(delivery.id == first.id)
                #expect(delivery.eventID == first.eventID)
                #expect(delivery.idempotencyKey == first.idempotencyKey)
                #expect(delivery.fields == first.fields)
            }
            #expect(Set(replayed.map(\.id)) == [withID, withoutID])
            // Billing saw each entry once: the replay was for CRM only.
            #expect(billing.seen.withLock { $0.count } == 2)
            #expect(try await effectCounts(pool, "billing-effects").values.allSatisfy { $0 == 1 })
            #expect(try await dlq.list().isEmpty)
        }
    }

    @Test("replaying an entry that was applied already is suppressed: acked as a duplicate, not handled")
    func replayOfAppliedEntryIsSuppressed() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{customer}_created"
            let handler = Handler(rejecting: [], effectsKey: "effects")
            let id = try #require(try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("entity", "c")])))
            let worker = RunningWorker(
                pool: pool, configuration: .init(lease: .seconds(2)),
                subscriptions: [Subscription(stream: stream, group: "crm", handler: handler.handler)])
            #expect(await eventually { try await effectCounts(pool, "effects").count == 1 })
            // A dead letter of the same entry (an operator's mistake, or a letter written by a
            // worker whose settle raced another's): replaying it must not apply it again.
            let dlq = DeadLetters(client: pool, stream: stream, group: "crm")
            try await pool.send(
                XADD(
                    RedisArgument(dlq.key),
                    fields: [StreamField("entity", "c"), StreamField("dlq.original_id", id), StreamField("dlq.reason", "test")]))
            #expect(try await dlq.replay().ids.count == 1)
            #expect(await eventually { worker.worker.stats[.duplicates] == 1 })
            try await worker.stop()
            #expect(handler.seen.withLock { $0.count } == 1)
            #expect(try await effectCounts(pool, "effects").values.allSatisfy { $0 == 1 })
            #expect(try await pendingCount(pool, stream: dlq.replayKey, group: "crm") == 0)
        }
    }

    // Before, it retried for ever ("cannot create consumer group yet; retrying", a warning a
    // second) while its /healthz answered ok: a user-style pass gave billing the CRM's user.
    @Test("a worker whose ACL user may not use its stream ends at once with NOPERM, naming the group and stream")
    func streamWithoutPermission() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await pool.send(["ACL", "SETUSER", "other", "on", ">pw", "resetkeys", "~elsewhere:*", "+@all"])
            var configuration = server.configuration
            configuration.authentication = .init(username: "other", password: "pw")
            let restricted = try RedisConnectionPool(configuration: configuration)
            let worker = RunningWorker(
                pool: restricted, configuration: .init(lease: .seconds(2)),
                subscriptions: [Subscription(stream: "s", group: "g", handler: countingHandler(effectsKey: "effects"))])
            let outcome = LockedValue<Result<Void, any Error>?>(nil)
            Task {
                do {
                    try await worker.task.value
                    outcome.withLock { $0 = .success(()) }
                } catch {
                    outcome.withLock { $0 = .failure(error) }
                }
            }
            // By itself: a worker that retries for ever is still running 45 s on. (Alone it ends in
            // ~5 s; in the whole suite on 2 cores it once took 27 s.)
            let deadline = ContinuousClock.now + .seconds(45)
            while outcome.withLock({ $0 }) == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let ended = outcome.withLock { $0 }
            if ended == nil { worker.task.cancel() }
            #expect(ended != nil, "the worker still retries 45 s later")
            guard case .failure(let failure) = ended else {
                Issue.record("the worker did not fail: \(String(describing: ended))")
                await restricted.shutdown()
                return
            }
            let error = failure as? RedisError
            #expect(error?.code == .noPermission, "\(failure)")
            #expect(error?.message.contains("consumer group g of stream s") == true, "\(failure)")
            await restricted.shutdown()
        }
    }

    @Test("a worker whose ACL user may not use the replay stream still runs, without replays")
    func replayStreamWithoutPermission() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await pool.send(["ACL", "SETUSER", "worker", "on", ">pw", "resetkeys", "~s", "~idem:*", "~dlq:*", "~effects", "+@all"])
            var configuration = server.configuration
            configuration.authentication = .init(username: "worker", password: "pw")
            let restricted = try RedisConnectionPool(configuration: configuration)
            let ids = try await publish(pool, stream: "s", count: 3)
            let worker = RunningWorker(
                pool: restricted, configuration: .init(lease: .seconds(2)),
                subscriptions: [Subscription(stream: "s", group: "g", handler: countingHandler(effectsKey: "effects"))])
            #expect(await eventually { try await effectCounts(pool, "effects").count == ids.count })
            try await worker.stop()
            #expect(try await pool.send(["EXISTS", RedisArgument(StreamKeys.replay(stream: "s", group: "g"))]).int == 0)
            await restricted.shutdown()
        }
    }
}
