import Foundation
import LocalRedis
@testable import OrderShop
import RedisClient
import StreamWorker
import Synchronization
import TestSupport
import Testing

/// The dashboard over a real redis-server: one stream with one group, a worker on it whose
/// handler dead-letters the entry "poison" until ``fix()`` is called (the bug fixed, the dead
/// letter can be replayed), and two entries it handled.
struct DashboardFixture: Sendable {
    static let stream = "orders:{dash}"
    static let group = "mailer"
    static let token = "dash-admin-token"
    static let processedKey = "dash:processed:{dash}"

    let redis: LocalRedisServer
    let pool: RedisConnectionPool
    let dashboard: Dashboard
    let poisonEventID: String
    let fixed: FixFlag

    var deadLetters: DeadLetters { DeadLetters(client: pool, stream: Self.stream, group: Self.group) }

    func fix() { fixed.set() }

    /// Event ids the worker handled.
    func processed() async throws -> Set<String> {
        let reply = try await pool.send(RawCommand(["HKEYS", RedisArgument(Self.processedKey)], keys: [RedisArgument(Self.processedKey)], readOnly: true))
        return Set((reply.array ?? []).compactMap(\.string))
    }
}

final class FixFlag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// Runs `body` with a ``DashboardFixture`` whose poison entry is already dead-lettered; `host`
/// is where the dashboard pretends to listen (reads are open on loopback only).
func withDashboard<T: Sendable>(
    host: String = "127.0.0.1", token: String? = DashboardFixture.token, sampleInterval: Duration = .seconds(5),
    _ body: (DashboardFixture) async throws -> T
) async throws -> T {
    try await withRedisServer { server in
        let pool = try server.makePool(maximumConnections: 8)
        let fixed = FixFlag()
        let handler: StreamHandler = { delivery in
            if delivery.string("entity") == "poison", !fixed.isSet { throw MalformedEvent("customer ghost does not exist") }
            return .done(effects: [["HSET", RedisArgument(DashboardFixture.processedKey), RedisArgument(delivery.eventID), "1"]])
        }
        let worker = StreamWorker(
            client: pool, configuration: WorkerConfiguration(consumerName: "mailer-1", block: .milliseconds(200), lease: .seconds(2)),
            subscriptions: [Subscription(stream: DashboardFixture.stream, group: DashboardFixture.group, handler: handler)], logger: testLogger)
        let running = Task { try await worker.run() }
        func stop() async {
            worker.drain()
            _ = await running.result
            await pool.shutdown()
        }
        do {
            var poison = ""
            for entity in ["good-1", "poison", "good-2"] {
                let eventID = UUID().uuidString
                if entity == "poison" { poison = eventID }
                _ = try await pool.send(
                    XADD(RedisArgument(DashboardFixture.stream), fields: [StreamField("event_id", eventID), StreamField("entity", entity)]))
            }
            let fixture = DashboardFixture(
                redis: server, pool: pool,
                dashboard: Dashboard(
                    reader: OperationsReader(nodes: [pool]), history: RateHistory(interval: sampleInterval), adminToken: token, host: host),
                poisonEventID: poison, fixed: fixed)
            let settled = await eventually {
                let letters = try await fixture.deadLetters.list().count
                let processed = try await fixture.processed().count
                return letters == 1 && processed == 2
            }
            guard settled else {
                throw TestFailure("the worker did not dead-letter the poison entry and handle the others")
            }
            let result = try await body(fixture)
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }
}

/// What `GET /api/state` answers, as the page reads it.
struct DashboardStateReply: Decodable {
    var streams: [OperationsSnapshot.Stream]
    var unread: [OperationsSnapshot.UnreadNode]?
    var rates: [RateHistory.Series]
    var actions: Bool
}
