import Foundation
import Hummingbird
import HummingbirdTesting
import LocalRedis
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

/// `--confirm-replicas` on a Redis Cluster: each write is confirmed by the replica of the shard
/// that took it (`WAIT` on the connection to that slot's primary), so a stalled replica holds up
/// exactly the commands that wrote to its shard.
@Suite(.timeLimit(.minutes(3))) struct ClusterConfirmationTests {
    @Test("on a cluster, an order made while the replica of {order}'s shard stalls answers 503 'may have been applied' while a customer on another shard answers 200; once the replica resumes, the keyed retry replays the one order")
    func confirmationPerShard() async throws {
        try await withLocalCluster { cluster, client in try await check(cluster, client) }
    }

    @Test("rebuild --confirm-replicas 1 on a cluster checks the replicas of its own type's shard only: another shard that lost its replica does not refuse it, its own does")
    func rebuildChecksItsOwnShard() async throws {
        try await withLocalCluster { cluster, client in
            let customer = try #require(try await cluster.primaryIndex(for: HashSlot(key: "{customer}")))
            let roles = try await cluster.roles()
            let other = try #require(roles.primaries.first { $0 != customer })
            let otherReplica = try #require(roles.replicasOf[other]?.first)
            let ownReplica = try #require(roles.replicasOf[customer]?.first)
            try await EventStore(pool: client).create([Customer(id: "c1", name: "C", email: "c@shop.test")], trace: "seed")
            let ordershop = try builtProduct("ordershop")
            await cluster.nodes[otherReplica].kill()
            // Refused before ("Redis at <other> has 0 connected"), though nothing of it is there.
            let done = try await runChild(ordershop, ["rebuild", "customer", "--url", cluster.url, "--confirm-replicas", "1"])
            #expect(done.status == 0, "\(done.output)")
            await cluster.nodes[ownReplica].kill()
            let refused = try await runChild(ordershop, ["rebuild", "customer", "--url", cluster.url, "--confirm-replicas", "1"])
            #expect(refused.status != 0 && refused.output.contains("refused, nothing changed") && refused.output.contains(":\(cluster.announcedPort(of: customer))"), "\(refused.output)")
        }
    }

    private func check(_ cluster: LocalRedisCluster, _ client: RedisClusterClient) async throws {
        // Customers, products and stock on other shards than orders, so that stalling the
        // replica of {order}'s shard holds up only the order's own step.
        let order = try #require(try await cluster.primaryIndex(for: HashSlot(key: "{order}")))
        let other = try #require(try await cluster.roles().primaries.first { $0 != order })
        for tag in ["{customer}", "{product}", "{inventory}"] where try await cluster.primaryIndex(for: HashSlot(key: tag)) == order {
            try await cluster.moveSlot(HashSlot(key: tag), from: order, to: other)
        }
        let replica = try #require(try await cluster.roles().replicasOf[order]?.first)
        // A second between reserving the stock and making the order, to stop the replica there.
        let context = try ShopContext(
            pool: client, logger: testLogger, confirmation: ReplicaConfirmation(replicas: 1, timeout: .seconds(2)), orderStepPause: .seconds(1))
        try await context.store.create([Customer(id: "c1", name: "C", email: "c@shop.test")], trace: "seed")
        try await context.store.create([Product(id: "p1", name: "P", price: 1)], trace: "seed")
        try await context.store.create([Inventory(id: "i1", productID: "p1", amount: 3)], trace: "seed")
        let orders = Application(router: buildOwnerRouter(Order.self, context: context))
        let customers = Application(router: buildOwnerRouter(Customer.self, context: context))

        try await orders.test(.router) { client in
            @Sendable func create() async throws -> (HTTPResponse.Status, JSONValue, replayed: Bool) {
                try await client.execute(
                    uri: "/order", method: .post, headers: [.contentType: "application/json", .idempotencyKey: "cart-c"],
                    body: ByteBuffer(string: #"{"product_ids": ["p1"], "customer_id": "c1"}"#)
                ) { try keyedAnswer($0) }
            }
            let (made, madeBody, _) = try await create()
            #expect(made == .ok, "\(madeBody)")

            let stalledAttempt = Task {
                try await client.execute(
                    uri: "/order", method: .post, headers: [.contentType: "application/json", .idempotencyKey: "cart-d"],
                    body: ByteBuffer(string: #"{"product_ids": ["p1"], "customer_id": "c1"}"#)
                ) { response in (response.status, try JSONParser.parse(Array(response.body.readableBytesView))) }
            }
            // Its stock is reserved (on another shard, confirmed): the replica of {order}'s shard
            // stalls before the order is made.
            try #require(await eventually { try await context.pool.send(ZCARD(RedisArgument(OrderStepKeys.open))) == 1 })
            cluster.nodes[replica].signal(SIGSTOP)
            defer { cluster.nodes[replica].signal(SIGCONT) }
            let (stalled, stalledBody) = try await stalledAttempt.value
            #expect(stalled == .serviceUnavailable, "\(stalledBody)")
            #expect(stalledBody["outcome"]?.stringValue == "may have been applied", "\(stalledBody)")

            // Another shard's write is confirmed by its own replica meanwhile.
            try await customers.test(.router) { other in
                let status = try await other.execute(
                    uri: "/customer", method: .post, headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: #"{"name": "D", "email": "d@shop.test"}"#)
                ) { $0.status }
                #expect(status == .ok)
            }
            cluster.nodes[replica].signal(SIGCONT)
        }
        // The stalled order's keyed retry, once the replica has it: its id, replayed; two orders,
        // two units taken (its stock reservation, on another shard, was confirmed).
        try await orders.test(.router) { client in
            let (retry, ids, replayed) = try await client.execute(
                uri: "/order", method: .post, headers: [.contentType: "application/json", .idempotencyKey: "cart-d"],
                body: ByteBuffer(string: #"{"product_ids": ["p1"], "customer_id": "c1"}"#)
            ) { try keyedAnswer($0) }
            #expect(retry == .ok && replayed, "\(ids)")
        }
        let made = try JSONParser.parse(try await ReadModel(pool: client).list(.order)).arrayValue ?? []
        #expect(made.count == 2, "\(made)")
        #expect(try await ReadModel(pool: client).lookup(Inventory.self, id: "i1")?.entity.amount == 1)
    }
}
