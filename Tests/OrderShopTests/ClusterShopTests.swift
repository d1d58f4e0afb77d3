import AsyncHTTPClient
import LocalRedis
@testable import OrderShop
import RedisClient
import ServiceLifecycle
import StreamWorker
import Synchronization
import TestSupport
import Testing

extension ShopIntegration {
    /// OrderShop on a Redis Cluster (3 primaries) whose `{order}` and `{inventory}` slots live on
    /// different primaries, so that no command can take a shortcut through one node: every
    /// script must keep to one slot (Redis refuses one that does not, CROSSSLOT), and an order
    /// change is the three steps of ``OrderSteps``.
    @Suite struct ClusterShopTests {
        @Test("the demo (the article's scenario twice, CRM stopped and caught up, every mail once) passes on the cluster")
        func demoOnTheCluster() async throws {
            try await withClusterShop { shop, cluster in
                try await expectDemoPasses(shop, on: cluster)
            }
        }

        /// Every entity type spread over 6 partitions, two on each primary
        /// (``ShopLayout``): no script crosses slots, every list merges the partitions in creation
        /// order, the workers read every partition, and the layout is recorded for the
        /// operations commands.
        @Test("the demo passes on the cluster with every entity type in 6 partitions")
        func demoOnTheClusterInPartitions() async throws {
            try await withClusterShop(layout: ShopLayout(partitions: 6)) { shop, cluster in
                try await expectDemoPasses(shop, on: cluster)
                #expect(try await ShopLayout.recorded(in: shop.client) == ShopLayout(partitions: 6))
                // Customers created one by one lie on every primary (a batch is in one partition:
                // the demo's two). 30 land on only two of three primaries once in ~70,000 runs.
                for i in 0..<30 { _ = try await shop.gateway.post("/customer", ["name": "S\(i)", "email": "s\(i)@shop.test"]) }
                var holders = Set<String>()
                for partition in ShopLayout(partitions: 6).partitions(.customer) {
                    let key = RedisArgument(partition.keys.ids)
                    if try await shop.client.send(RawCommand(["ZCARD", key], keys: [key], readOnly: true)).int ?? 0 > 0 {
                        holders.insert("\(try #require(shop.client.primary(for: HashSlot(key: partition.keys.ids))))")
                    }
                }
                #expect(holders.count == 3, "customers on \(holders.sorted())")
            }
        }

        /// The demo against the shop on the cluster: passed, each mail once.
        func expectDemoPasses(_ shop: ClusterShop, on cluster: LocalRedisCluster) async throws {
            let demo = Demo(
                options: Demo.Options(gatewayURL: shop.stack.gatewayURL, redis: try RedisConfiguration(url: cluster.url), adminToken: TestShop.adminToken),
                log: { _ in })
            let report = try await demo.run(httpClient: HTTPClient.shared)
            #expect(report.passed, "\(report.failures)")
            #expect(report.mailsByKind == [.welcome: 20, .goodbye: 2, .thankYou: 20, .pleasePay: 20, .paymentReceived: 2])
        }

        @Test("stock on the cluster: concurrent orders never oversell, updates and deletions give units back, no reservation stays open")
        func stockOnTheCluster() async throws {
            try await withClusterShop { shop, _ in
                let gateway = shop.gateway
                let customer = try #require(try await gateway.post("/customer", ["name": "B", "email": "b@shop.test"]).ids.first)
                let product = try #require(try await gateway.post("/product", ["name": "P", "price": 1]).ids.first)
                let stock = try #require(try await gateway.post("/inventory", ["product_id": .string(product), "amount": 5]).ids.first)
                // A stock record of a product that does not exist: 400, checked before the script.
                let dangling = try await gateway.post("/inventory", ["product_id": "no-such-product", "amount": 1])
                #expect(dangling.status == 400 && dangling.errorField == "product_id", "\(dangling)")
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<12 {
                        group.addTask { try await gateway.post("/orders", ["product_ids": [.string(product)], "customer_id": .string(customer)]).status }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == 200 }.count == 5 && statuses.filter { $0 == 409 }.count == 7, "\(statuses)")
                func amount() async throws -> Double? { try await gateway.get("/inventory/\(stock)").json?["amount"]?.numberValue }
                #expect(try await amount() == 0)
                let order = try #require(try await gateway.get("/orders").json?.arrayValue?.first?["id"]?.stringValue)
                // Moved to another product: one unit back, one taken there.
                let other = try #require(try await gateway.post("/product", ["name": "Q", "price": 1]).ids.first)
                let otherStock = try #require(try await gateway.post("/inventory", ["product_id": .string(other), "amount": 3]).ids.first)
                let moved = try await gateway.put("/order/\(order)", ["id": .string(order), "product_ids": [.string(other)], "customer_id": .string(customer)])
                #expect(moved.status == 200, "\(moved)")
                #expect(try await amount() == 1)
                #expect(try await gateway.get("/inventory/\(otherStock)").json?["amount"]?.numberValue == 2)
                let second = try #require(try await gateway.get("/orders").json?.arrayValue?.last?["id"]?.stringValue)
                #expect(try await gateway.delete("/order/\(second)").status == 200)
                #expect(try await amount() == 2)
                #expect(try await gateway.get("/orders/unbilled").json?.arrayValue?.count == 4)
                #expect(try await shop.client.send(ZCARD(RedisArgument(OrderStepKeys.open))) == 0)
            }
        }
    }
}

/// The shop of a test on a Redis Cluster.
struct ClusterShop: Sendable {
    let stack: ShopStack
    let client: RedisClusterClient
    var gateway: ShopClient { ShopClient(baseURL: stack.addresses.url(.gateway), client: HTTPClient.shared) }
}

/// A 3-primary cluster with the `{order}` slot moved to another primary than `{inventory}`'s,
/// and the whole shop on it (`?cluster=yes`), for one test.
func withClusterShop(layout: ShopLayout = .single, _ body: (ClusterShop, LocalRedisCluster) async throws -> Void) async throws {
    var options = LocalRedisCluster.Options()
    options.replicasPerPrimary = 0
    let cluster = try await LocalRedisCluster(options)
    do {
        try await separateOrdersFromStock(in: cluster)
        try await runShop(on: cluster, layout: layout, body)
    } catch {
        await cluster.shutdown()
        throw error
    }
    await cluster.shutdown()
}

/// Moves the `{order}` slot off the primary of `{inventory}` when they share one.
private func separateOrdersFromStock(in cluster: LocalRedisCluster) async throws {
    func owner(_ tag: String) async throws -> Int {
        let client = try RedisClusterClient(configuration: cluster.configuration)
        defer { Task { await client.shutdown() } }
        try await client.connect()
        let address = try #require(client.primary(for: HashSlot(key: tag)))
        return try #require(cluster.nodes.firstIndex { $0.port == address.port })
    }
    let inventory = try await owner("{inventory}")
    if try await owner("{order}") == inventory {
        try await cluster.moveSlot(HashSlot(key: "{order}"), from: inventory, to: (inventory + 1) % 3)
    }
    try #require(try await owner("{order}") != owner("{inventory}"), "the test needs {order} and {inventory} on two primaries")
}

private func runShop(on cluster: LocalRedisCluster, layout: ShopLayout, _ body: (ClusterShop, LocalRedisCluster) async throws -> Void) async throws {
    let client = try RedisClusterClient(configuration: cluster.configuration)
    let httpClient = makeHTTPClient()
    var stackOptions = ShopStack.Options(
        ports: anyPorts(), workerConfiguration: WorkerConfiguration(block: .milliseconds(500), lease: .seconds(2)), metricsPort: nil,
        adminRoutes: true, adminToken: TestShop.adminToken)
    stackOptions.layout = layout
    let stack = try ShopStack(redis: try RedisConfiguration(url: cluster.url), httpClient: httpClient, options: stackOptions, logger: testLogger)
    let group = ServiceGroup(services: stack.services, logger: testLogger)
    let running = Task { try await group.run() }
    let shop = ClusterShop(stack: stack, client: client)
    var failure: (any Error)?
    let up = await eventually(timeout: .seconds(60)) {
        guard !stack.addresses.url(.gateway).hasSuffix(":0") else { return false }
        return (try? await shop.gateway.get("/healthz").status) == 200
    }
    if up {
        do { try await body(shop, cluster) } catch { failure = error }
    } else {
        failure = TestFailure("the shop did not come up on the cluster")
    }
    await group.triggerGracefulShutdown()
    _ = await running.result
    await stack.shutdown()
    await client.shutdown()
    try? await httpClient.shutdown()
    if let failure { throw failure }
}
