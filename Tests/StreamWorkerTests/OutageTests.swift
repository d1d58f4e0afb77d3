import Foundation
import Logging
import RedisClient
import StreamWorker
import Synchronization
import TestSupport
import Testing

/// A downstream the handlers call: up or down, counting calls and how many run at once.
final class Downstream: Sendable {
    let down = Atomic<Bool>(false)
    let calls = Atomic<Int>(0)
    /// Calls made while it was down.
    let callsWhileDown = Atomic<Int>(0)
    /// The breaker is meant to be open: how many calls started since then run at once at most.
    let sinceOpen = Mutex((open: false, now: 0, most: 0))

    func handler(effectsKey: String) -> StreamHandler {
        { delivery in
            self.calls.add(1, ordering: .relaxed)
            let counted = self.sinceOpen.withLock { s -> Bool in
                guard s.open else { return false }
                s.now += 1
                s.most = max(s.most, s.now)
                return true
            }
            defer { if counted { self.sinceOpen.withLock { $0.now -= 1 } } }
            if self.down.load(ordering: .acquiring) {
                self.callsWhileDown.add(1, ordering: .relaxed)
                // Let calls overlap if nothing holds them back.
                try await Task.sleep(for: .milliseconds(20))
                self.sinceOpen.withLock { $0.open = true }
                throw DeliveryError.unavailable("msg unavailable: connection refused")
            }
            return .done(effects: [["HINCRBY", RedisArgument(effectsKey), RedisArgument(delivery.eventID), "1"]])
        }
    }
}

/// Log lines kept in memory, for tests that check what was logged.
final class CapturedLog: Sendable {
    let lines = Mutex<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])

    /// `metadataProvider`: what each line gets from where it was logged (a trace id), as a
    /// process's logging bootstrap adds it.
    func logger(metadataProvider: Logger.MetadataProvider? = nil) -> Logger {
        Logger(label: "captured") { _ in CapturingHandler(log: self, metadataProvider: metadataProvider) }
    }

    struct CapturingHandler: LogHandler {
        let log: CapturedLog
        var metadataProvider: Logger.MetadataProvider?
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(metadataProvider?.get() ?? [:]) { $1 }.merging(event.metadata ?? [:]) { $1 }
            log.lines.withLock { $0.append((event.level, "\(event.message)", merged)) }
        }
    }
}

@Suite("Retries that outlast a downstream outage")
struct OutageTests {
    @Test("a downstream down far longer than the maximum deliveries' backoff: nothing is dead-lettered, all applied once when it returns")
    func outageLosesNothing() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "mails"
            let downstream = Downstream()
            downstream.down.store(true, ordering: .releasing)
            let ids = try await publish(pool, stream: stream, count: 30)
            // Without the unavailable policy these would be spent within ~0.2 s: 2 deliveries, 20-50 ms apart.
            let worker = RunningWorker(
                pool: pool,
                configuration: .init(
                    maxInFlight: 8, lease: .seconds(2), maxDeliveries: 2,
                    retryBackoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(50)),
                    unavailableBackoff: Backoff(initial: .milliseconds(200), maximum: .milliseconds(400))),
                subscriptions: [Subscription(stream: stream, group: "mail", handler: downstream.handler(effectsKey: "sent"))])
            try await Task.sleep(for: .seconds(4))
            #expect(try await pool.send(XLEN(RedisArgument(StreamKeys.deadLetter(stream: stream, group: "mail")))) == 0)
            downstream.down.store(false, ordering: .releasing)
            #expect(await eventually { try await effectCounts(pool, "sent").count == ids.count })
            try await worker.stop()
            #expect(try await effectCounts(pool, "sent") == Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) }))
            #expect(try await pool.send(XLEN(RedisArgument(StreamKeys.deadLetter(stream: stream, group: "mail")))) == 0)
        }
    }

    @Test("while the downstream is down the subscription backs off as a whole: one probe at a time, far fewer calls than entries")
    func circuitBreaker() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "mails"
            let downstream = Downstream()
            downstream.down.store(true, ordering: .releasing)
            let ids = try await publish(pool, stream: stream, count: 60)
            let worker = RunningWorker(
                pool: pool,
                configuration: .init(
                    maxInFlight: 8, lease: .seconds(2), retryBackoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(50)),
                    unavailableBackoff: Backoff(initial: .milliseconds(300), maximum: .milliseconds(300))),
                subscriptions: [Subscription(stream: stream, group: "mail", handler: downstream.handler(effectsKey: "sent"))])
            try await Task.sleep(for: .seconds(3))
            let whileDown = downstream.callsWhileDown.load(ordering: .relaxed)
            // The first wave (at most maxInFlight calls) opens the breaker; then a probe every
            // 150-300 ms: about 20 in 3 s at the most. Without a breaker every entry is tried.
            #expect(whileDown < ids.count, "\(whileDown) calls in 3 s while down")
            #expect(downstream.sinceOpen.withLock { $0.most } <= 1, "calls ran side by side while the breaker was open")
            downstream.down.store(false, ordering: .releasing)
            #expect(await eventually { try await effectCounts(pool, "sent").count == ids.count })
            try await worker.stop()
        }
    }

    @Test("an entry that fails for its own content is dead-lettered at once, after one call")
    func invalidEntryAtOnce() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "orders"
            let calls = Atomic<Int>(0)
            try await publish(pool, stream: stream, count: 1)
            let worker = RunningWorker(
                pool: pool, configuration: .init(lease: .seconds(2), maxDeliveries: 5),
                subscriptions: [
                    Subscription(stream: stream, group: "g") { _ in
                        calls.add(1, ordering: .relaxed)
                        throw DeliveryError.invalid("msg refused the mail (422): no recipient")
                    }
                ])
            let letters = DeadLetters(client: pool, stream: stream, group: "g")
            #expect(await eventually { try await letters.list().count == 1 })
            try await worker.stop()
            #expect(calls.load(ordering: .relaxed) == 1)
            let letter = try #require(try await letters.list().first)
            #expect(letter.deliveryCount == 1)
            #expect(letter.reason.contains("422"))
        }
    }

    @Test("each failed attempt is logged at warning with its reason, rate-limited")
    func failuresLoggedRateLimited() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "mails"
            let downstream = Downstream()
            downstream.down.store(true, ordering: .releasing)
            try await publish(pool, stream: stream, count: 20)
            let log = CapturedLog()
            let worker = StreamWorker(
                client: pool,
                configuration: .init(
                    maxInFlight: 8, lease: .seconds(2), retryBackoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(50)),
                    unavailableBackoff: Backoff(initial: .milliseconds(100), maximum: .milliseconds(100))),
                subscriptions: [Subscription(stream: stream, group: "mail", handler: downstream.handler(effectsKey: "sent"))],
                logger: log.logger())
            let started = ContinuousClock.now
            let task = Task { try await worker.run() }
            // Waits for the failures instead of a fixed time: a loaded machine (the whole suite on
            // 2 cores) made 7 attempts in 3 s where an idle one makes ~30.
            #expect(await eventually(timeout: .seconds(60)) { downstream.callsWhileDown.load(ordering: .relaxed) >= 10 })
            worker.drain()
            try await task.value
            let elapsed = ContinuousClock.now - started
            let failures = downstream.callsWhileDown.load(ordering: .relaxed)
            let warnings = log.lines.withLock { $0 }.filter { $0.level == .warning && $0.message.contains("handler failed") }
            // One warning per 5 s interval at most (the first at once).
            let allowed = Int(elapsed / .seconds(5)) + 1
            #expect(!warnings.isEmpty, "no warning for \(failures) failed attempts")
            #expect(warnings.count <= allowed, "\(warnings.count) warnings for \(failures) failures in \(elapsed): not rate-limited")
            #expect(warnings.allSatisfy { "\($0.metadata["reason"] ?? "")".contains("connection refused") })
        }
    }

    @Test("Redis away: the worker's failed reads are logged at most once per interval, and once when reads work again")
    func readFailuresLoggedRateLimited() async throws {
        try await withRedisServer { server in
            // Reads fail at once instead of waiting out a reconnect window.
            let pool = try server.makePool { $0.reconnect.retryWindow = .zero }
            let stream = "away"
            try await publish(pool, stream: stream, count: 5)
            let log = CapturedLog()
            let worker = StreamWorker(
                client: pool, configuration: .init(readers: 2, lease: .seconds(2)),
                subscriptions: [Subscription(stream: stream, group: "g", handler: countingHandler(effectsKey: "done"))], logger: log.logger())
            let task = Task { try await worker.run() }
            #expect(await eventually { (try? await effectCounts(pool, "done").count) == 5 })
            await server.kill()
            // Two readers retrying with 100 ms doubling: about five attempts each in 3 s.
            try await Task.sleep(for: .seconds(3))
            // One line for the worker: its subscription's readers and its replay stream's reader.
            let reads = log.lines.withLock { $0 }.filter { $0.message == "read failed; retrying" }
            try await server.start()
            // Once Redis answers again the log says so, once for the worker.
            #expect(await eventually { log.lines.withLock { $0 }.contains { $0.message == "reads work again" } })
            worker.drain()
            try await task.value
            #expect(reads.count == 1, "\(reads.count) lines in 3 s: \(reads.map { "\($0.metadata)" })")
            let again = log.lines.withLock { $0 }.filter { $0.message == "reads work again" }
            #expect(again.count == 1 && again[0].level == .info && Int("\(again[0].metadata["failures"] ?? "")") ?? 0 >= 2, "\(again.map { "\($0.metadata)" })")
        }
    }

    @Test("a drain while the breaker holds entries back lets them go at once (pending, for another worker), not at the drain deadline")
    func drainLetsGoOfEntriesBehindAnOpenBreaker() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "held-back"
            let downstream = Downstream()
            downstream.down.store(true, ordering: .releasing)
            try await publish(pool, stream: stream, count: 40)
            let log = CapturedLog()
            // The breaker stays open for two minutes after a failure; the drain deadline is 20 s.
            let worker = StreamWorker(
                client: pool,
                configuration: .init(
                    maxInFlight: 8, lease: .seconds(2), unavailableBackoff: Backoff(initial: .seconds(120), maximum: .seconds(120)),
                    drainDeadline: .seconds(20)),
                subscriptions: [Subscription(stream: stream, group: "mail", handler: downstream.handler(effectsKey: "sent"))],
                logger: log.logger())
            let task = Task { try await worker.run() }
            // A call failed (the breaker is open) and more entries than handler slots wait behind it.
            #expect(await eventually(timeout: .seconds(60)) { downstream.callsWhileDown.load(ordering: .relaxed) >= 1 && worker.heldEntries > 8 })
            worker.drain()
            try await task.value
            let deadlines = log.lines.withLock { $0 }.filter { $0.message.contains("drain deadline passed") }
            #expect(deadlines.isEmpty, "the drain waited for its deadline behind the open breaker: \(deadlines.map(\.message))")
            #expect(worker.heldEntries == 0)
            // Nothing applied and nothing dead-lettered: what was read is pending for another worker.
            let pending = try await pool.send(XPENDING(RedisArgument(stream), group: "mail"))
            #expect(pending.count > 8, "\(pending)")
            #expect(try await DeadLetters(client: pool, stream: stream, group: "mail").list().isEmpty)
            #expect(try await pool.send(RawCommand(["EXISTS", "sent"])).int == 0)
        }
    }
}
