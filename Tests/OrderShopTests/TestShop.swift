import AsyncHTTPClient
import Foundation
import LocalRedis
import Logging
@testable import OrderShop
import RedisClient
import ServiceLifecycle
import StreamWorker
import Synchronization
import TestSupport
import Testing

/// The whole shop on a real redis-server, every service on its own loopback port, for one test.
struct TestShop: Sendable {
    let redis: LocalRedisServer
    let stack: ShopStack
    let pool: RedisConnectionPool
    /// The shop's partitions (``ShopLayout``).
    var layout: ShopLayout = .single
    /// The gateway (its port is known once it listens).
    var gateway: ShopClient { client(.gateway) }

    var readModel: ReadModel { ReadModel(pool: pool, layout: layout) }
    var store: EventStore { EventStore(pool: pool, layout: layout) }
    var mails: MailLog { MailLog(pool: pool) }

    /// A client for one of the services (the owners answer the same routes as the gateway).
    func client(_ service: ServiceName) -> ShopClient {
        ShopClient(baseURL: stack.addresses.url(service), client: HTTPClient.shared)
    }

    /// The gateway's admin token in tests.
    static let adminToken = "test-admin-token"

    /// A POST to an admin route of the gateway, with the token.
    func admin(_ path: String) async throws -> ShopClient.Reply {
        try await gateway.send(.POST, path, body: nil, headers: [("Authorization", "Bearer \(Self.adminToken)")])
    }

    /// Every key of `mail:sent` with how often it was sent.
    func mailKeys() async throws -> [String: Int] {
        var out: [String: Int] = [:]
        for m in try await mails.all() { out[m.key, default: 0] += 1 }
        return out
    }
}

let testLogger: Logger = {
    var l = Logger(label: "ordershop.test")
    l.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
    return l
}()

/// Port 0 for every service: each gets a free port from the kernel when it binds, and the
/// stack's directory tells the callers (no window where another process could take it).
func anyPorts() -> [ServiceName: Int] {
    Dictionary(uniqueKeysWithValues: ServiceName.allCases.map { ($0, 0) })
}

/// Loopback ports where nothing listens and nothing can start listening while this lives: a
/// socket bound to each, never listening, so a connect is refused at once.
final class RefusingPorts: @unchecked Sendable {
    private var sockets: [Int32] = []
    let ports: [ServiceName: Int]

    init() throws {
        var ports: [ServiceName: Int] = [:]
        for service in ServiceName.allCases {
            let (fd, port) = try LocalRedisServer.bindLoopbackSocket()
            sockets.append(fd)
            ports[service] = port
        }
        self.ports = ports
    }

    deinit { for fd in sockets { close(fd) } }
}

/// Starts redis-server and the shop (with the given in-process workers), waits until every
/// service answers /healthz, runs `body`, then shuts everything down gracefully.
///
/// Ports are picked free and then bound, so another process may take one in between: then a
/// service fails to bind, the group ends, and the shop is started again on other ports.
func withShop<T: Sendable>(
    workers: [WorkerName] = WorkerName.allCases,
    workerConfiguration: WorkerConfiguration = WorkerConfiguration(block: .milliseconds(500), lease: .seconds(2), retryBackoff: .shopWorkers),
    dashboard: Bool = false,
    callsInProcess: Bool = false,
    layout: ShopLayout = .single,
    _ body: (TestShop) async throws -> T
) async throws -> T {
    try await withRedisServer { server in
        let pool = try server.makePool(maximumConnections: 8)
        let httpClient = makeHTTPClient()
        for attempt in 1...5 {
            var options = ShopStack.Options(
                ports: anyPorts(), workers: workers, workerConfiguration: workerConfiguration, metricsPort: nil, adminRoutes: true,
                adminToken: TestShop.adminToken, dashboard: dashboard, callsInProcess: callsInProcess)
            options.layout = layout
            let stack = try ShopStack(redis: server.configuration, httpClient: httpClient, options: options, logger: testLogger)
            let group = ServiceGroup(services: stack.services, logger: testLogger)
            let ended = Mutex(false)
            let running = Task {
                defer { ended.withLock { $0 = true } }
                try await group.run()
            }
            let shop = TestShop(redis: server, stack: stack, pool: pool, layout: layout)
            func stop() async {
                await group.triggerGracefulShutdown()
                _ = await running.result
                await stack.shutdown()
            }
            var up = true
            for service in ServiceName.allCases {
                up = await eventually(timeout: .seconds(30)) {
                    if ended.withLock({ $0 }) { return true }
                    guard !stack.addresses.url(service).hasSuffix(":0") else { return false }
                    return (try? await shop.client(service).get("/healthz").status) == 200
                }
                if ended.withLock({ $0 }) || !up { break }
            }
            if ended.withLock({ $0 }) || !up {
                await group.triggerGracefulShutdown()
                let result = await running.result
                await stack.shutdown()
                if attempt < 5 { continue }
                await pool.shutdown()
                try? await httpClient.shutdown()
                throw TestFailure("the shop did not come up: \(result)")
            }
            do {
                let result = try await body(shop)
                await stop()
                await pool.shutdown()
                try? await httpClient.shutdown()
                return result
            } catch {
                await stop()
                await pool.shutdown()
                try? await httpClient.shutdown()
                throw error
            }
        }
        throw TestFailure("unreachable")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Expects a JSON error answer with this status that names this field.
func expectError(_ reply: ShopClient.Reply, _ status: Int, field: String, _ what: String) {
    #expect(reply.status == status, "\(what): \(reply)")
    #expect(reply.isJSON, "\(what): not a JSON body: \(reply)")
    #expect(reply.errorField == field, "\(what): \(reply)")
}

extension ShopClient.Reply {
    /// The `field` of a JSON error body.
    var errorField: String? { json?["field"]?.stringValue }
    var errorMessage: String? { json?["error"]?.stringValue }
    var isJSON: Bool { contentType?.hasPrefix("application/json") == true && json != nil }
}

/// The mails owed for every event in the shop's streams: `<group>:<event_id>` per kind.
func expectedMails(_ pool: RedisConnectionPool, layout: ShopLayout = .single) async throws -> [String: MailKind] {
    let sources: [(EntityType, EventAction, [MailKind])] = [
        (.customer, .created, [.welcome]),
        (.customer, .deleted, [.goodbye]),
        (.order, .created, [.thankYou, .pleasePay]),
        (.billing, .created, [.paymentReceived]),
    ]
    var out: [String: MailKind] = [:]
    for (type, action, kinds) in sources {
        for entry in try await layout.partitions(type).asyncFlatMap({ try await pool.send(XRANGE(RedisArgument($0.stream(action)))) }) {
            let eventID = try #require(entry.string("event_id"))
            for kind in kinds { out["\(kind.group):\(eventID)"] = kind }
        }
    }
    return out
}

extension Array {
    func asyncFlatMap<T>(_ transform: (Element) async throws -> [T]) async throws -> [T] {
        var out: [T] = []
        for element in self { out += try await transform(element) }
        return out
    }
}

/// The suites that start redis-server and the shop (`swift test --filter ShopIntegration`).
@Suite struct ShopIntegration {}
