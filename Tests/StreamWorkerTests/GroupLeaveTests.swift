import LocalRedis
import Logging
import RedisClient
@testable import StreamWorker
import TestSupport
import Testing

/// Leaving the consumer group when a subscription stops (``GroupMembership/leaveIfEmpty()``).
@Suite("Leaving the consumer group")
struct GroupLeaveTests {
    /// A context whose logs `log` captures, down to debug.
    private func context(_ pool: RedisConnectionPool, stream: String, log: CapturedLog, inspectionInterval: Duration = .seconds(5)) -> SubscriptionContext {
        var logger = log.logger()
        logger.logLevel = .debug
        let configuration = WorkerConfiguration(lease: .seconds(60), inspectionInterval: inspectionInterval)
        return SubscriptionContext(
            subscription: Subscription(stream: stream, group: "g") { _ in .done }, consumer: "c", configuration: configuration, client: pool,
            stats: WorkerStats(), metrics: SubscriptionMetrics(stream: stream, group: "g"), logger: logger, held: HeldEntries(),
            drain: ShutdownSignal(), origin: nil, breaker: CircuitBreaker(backoff: configuration.unavailableBackoff), failureWarnings: RateLimitedWarning())
    }

    private func lines(_ log: CapturedLog, _ level: Logger.Level) -> [String] {
        log.lines.withLock { $0.filter { $0.level == level }.map(\.message) }
    }

    /// The announcer's script refused by the ACL (inside a script Redis 7.0 answers ERR, not
    /// NOPERM): one warning, saying what it means, and the loop goes on until the drain.
    @Test("a user that may not read the group's history inside the announcer's script: one warning")
    func announcerRefusedByTheACLWarnsOnce() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await GroupMembership(context: context(pool, stream: "quiet", log: CapturedLog())).ensureGroup()
            try await pool.send(["ACL", "SETUSER", "reader", "on", ">pw", "resetkeys", "~quiet", "+@all", "-xreadgroup"])
            var configuration = server.configuration
            configuration.authentication = .init(username: "reader", password: "pw")
            let restricted = try RedisConnectionPool(configuration: configuration)
            let log = CapturedLog()
            let listed = context(restricted, stream: "quiet", log: log, inspectionInterval: .milliseconds(50))
            let announcing = Task { await GroupMembership(context: listed).announceWhileReading() }
            #expect(await eventually { lines(log, .debug).count + lines(log, .warning).count >= 4 })
            listed.drain.fire()
            await announcing.value
            #expect(lines(log, .warning) == ["no permission to list this consumer in its group; status may not show it while it receives nothing"])
            #expect(lines(log, .debug).allSatisfy { $0 == "could not list this consumer in its group" })
            await restricted.shutdown()
            await pool.shutdown()
        }
    }

    @Test("no group to leave (never created): no warning; a group joined and empty: left; Redis gone: a warning")
    func leaveWarnsOnlyWhenItFailed() async throws {
        try await withRedisServer { server in
            // Without reconnect attempts, so that the leave with Redis gone fails at once.
            let pool = try server.makePool { $0.reconnect.retryWindow = .zero }
            // A stream whose group was never created (a worker stopped before creating it).
            let neverCreated = CapturedLog()
            await GroupMembership(context: context(pool, stream: "never", log: neverCreated)).leaveIfEmpty()
            #expect(lines(neverCreated, .warning).isEmpty, "\(lines(neverCreated, .warning))")
            #expect(lines(neverCreated, .debug).contains("no consumer group to leave"))

            // A group joined (the consumer exists, holding nothing): left, at info.
            let joined = CapturedLog()
            let membership = GroupMembership(context: context(pool, stream: "joined", log: joined))
            try await membership.ensureGroup()
            _ = try await pool.send(RawCommand(["XGROUP", "CREATECONSUMER", "joined", "g", "c"], keys: ["joined"]))
            await membership.leaveIfEmpty()
            #expect(lines(joined, .info).contains("left the consumer group"), "\(joined.lines.withLock { $0.map(\.message) })")
            #expect(lines(joined, .warning).isEmpty)

            // Redis gone: the leave failed, and says so.
            let gone = CapturedLog()
            let goneMembership = GroupMembership(context: context(pool, stream: "joined", log: gone))
            await server.stop()
            await goneMembership.leaveIfEmpty()
            #expect(lines(gone, .warning).contains("could not leave the consumer group"), "\(gone.lines.withLock { $0.map(\.message) })")
            await pool.shutdown()
        }
    }
}
