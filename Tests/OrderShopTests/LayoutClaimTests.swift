import Foundation
import LocalRedis
@testable import OrderShop
import RedisClient
import TestSupport
import Synchronization
import Testing

/// Every process of a shop must lay its entities out in the same partitions (``ShopLayout``): a
/// process told another count than the shop in its Redis refuses to start, in one line, before
/// it serves or consumes anything; the count is recorded for the operations commands.
@Suite struct LayoutClaimTests {
    @Test func aLayoutOfSeveralPartitionsIsRecordedAndHeldTo() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            #expect(try await ShopLayout.recorded(in: pool) == .single)
            try await ShopLayout(partitions: 4).claim(in: pool)
            #expect(try await ShopLayout.recorded(in: pool) == ShopLayout(partitions: 4))
            try await ShopLayout(partitions: 4).claim(in: pool)
            for other in [1, 2] {
                let refused = await #expect(throws: LayoutMismatch.self) { try await ShopLayout(partitions: other).claim(in: pool) }
                #expect(refused?.recorded == 4 && refused?.given == other)
                #expect(refused?.description.contains("start it with --partitions 4") == true, "\(String(describing: refused))")
            }
            // Orders under one partition's names, as the version before orders were spread kept
            // them in a shop in partitions: refused, naming the key.
            let old = RedisArgument(EntityType.order.keys.versions)
            _ = try await pool.send(RawCommand(["HSET", old, "o1", "1"], keys: [old]))
            let mixed = await #expect(throws: LayoutMixed.self) { try await ShopLayout(partitions: 4).claim(in: pool) }
            #expect(mixed?.found == EntityType.order.keys.versions)
            // The operations commands read the layout the same way: refused, not run on empty partitions.
            await #expect(throws: LayoutMixed.self) { try await ShopLayout.recorded(in: pool) }
            await pool.shutdown()
        }
    }

    /// A shop made in one partition records nothing (its users' ACLs predate the record), and is
    /// known by its read model: several partitions are refused there.
    @Test func aShopOfOnePartitionIsKnownByItsReadModel() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await ShopLayout.single.claim(in: pool)
            try await EventStore(pool: pool).create([Customer(id: "c1", name: "N", email: "n@shop.test")], trace: "")
            try await ShopLayout.single.claim(in: pool)
            #expect(try await pool.send(EXISTS(RedisArgument(ShopLayout.recordKey))) == 0)
            let refused = await #expect(throws: LayoutMismatch.self) { try await ShopLayout(partitions: 3).claim(in: pool) }
            #expect(refused?.recorded == 1 && refused?.given == 3)
            #expect(try await pool.send(EXISTS(RedisArgument(ShopLayout.recordKey))) == 0)
            await pool.shutdown()
        }
    }

    /// A shop in partitions whose record a failover lost is known by its creation counters:
    /// a process of one partition is refused, the operations commands say so; the shop's own
    /// count records it again. A shop of one partition whose worker made its groups (no entity
    /// yet) refuses several partitions.
    @Test func aLostRecordAndAShopWithOnlyItsStreamsAreKnown() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let layout = ShopLayout(partitions: 3)
            try await layout.claim(in: pool)
            try await EventStore(pool: pool, layout: layout).create([Customer(id: "x", name: "N", email: "n@shop.test")], trace: "")
            _ = try await pool.send(RawCommand(["DEL", RedisArgument(ShopLayout.recordKey)], keys: [RedisArgument(ShopLayout.recordKey)]))
            let refused = await #expect(throws: LayoutMismatch.self) { try await ShopLayout.single.claim(in: pool) }
            #expect(refused?.recorded == nil && refused?.description.contains("no record of how many") == true)
            await #expect(throws: LayoutRecordMissing.self) { try await ShopLayout.recorded(in: pool) }
            // Another count of partitions does not record itself there.
            let other = await #expect(throws: LayoutMismatch.self) { try await ShopLayout(partitions: 4).claim(in: pool) }
            #expect(other?.recorded == nil)
            #expect(try await pool.send(EXISTS(RedisArgument(ShopLayout.recordKey))) == 0)
            try await layout.claim(in: pool)
            #expect(try await ShopLayout.recorded(in: pool) == layout)
            await pool.shutdown()
        }
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = RedisArgument(EntityType.customer.stream(.created))
            _ = try await pool.send(RawCommand(["XGROUP", "CREATE", stream, "crm", "$", "MKSTREAM"], keys: [stream]))
            let refused = await #expect(throws: LayoutMismatch.self) { try await ShopLayout(partitions: 2).claim(in: pool) }
            #expect(refused?.recorded == 1)
            #expect(try await pool.send(EXISTS(RedisArgument(ShopLayout.recordKey))) == 0)
            await pool.shutdown()
        }
    }

    /// The gateway and the workers do not record the layout (their users in
    /// deploy/redis/users.acl may only read it), nor does a service whose user is refused the
    /// write: each waits until a service has recorded it, saying so once, then holds to it.
    @Test func aProcessThatMayNotRecordWaitsForAService() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let reader = try await server.makeUserPool("reader", rules: ["~*", "+@all", "-set"], admin: pool)
            let waits = WaitCount()
            let refused = Task {
                try await ShopLayout(partitions: 4).claim(in: reader)
                return ContinuousClock.now
            }
            let reading = Task {
                try await ShopLayout(partitions: 4).claim(in: pool, mayRecord: false) { waits.count.add(1, ordering: .relaxed) }
                return ContinuousClock.now
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await pool.send(EXISTS(RedisArgument(ShopLayout.recordKey))) == 0)
            let recordedAt = ContinuousClock.now
            try await ShopLayout(partitions: 4).claim(in: pool)
            #expect(try await refused.value > recordedAt, "the refused user's check ended only once a service had recorded the layout")
            #expect(try await reading.value > recordedAt, "the gateway's check ended only once a service had recorded the layout")
            try await ShopLayout(partitions: 4).claim(in: pool, mayRecord: false) { waits.count.add(1, ordering: .relaxed) }
            #expect(waits.count.load(ordering: .relaxed) == 1, "said once, and not when the record is there")
            await #expect(throws: LayoutMismatch.self) { try await ShopLayout(partitions: 2).claim(in: reader) }
            await reader.shutdown()
            await pool.shutdown()
        }
    }

    @Test("serve and work told another partition count than the shop's: one line, exit non-zero", arguments: ["serve", "work"])
    func processesRefuseAnotherLayout(command: String) async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            try await ShopLayout(partitions: 4).claim(in: pool)
            let url = "redis://127.0.0.1:\(server.port)"
            let arguments =
                command == "serve"
                ? ["serve", "customer", "--port", "0", "--url", url, "--partitions", "2"] : ["work", "crm", "--metrics-port", "0", "--url", url]
            let process = try ChildProcess(try builtProduct("ordershop"), arguments, environment: ["LOG_LEVEL": "info"])
            let status = await process.waitForExit(timeout: .seconds(60))
            await process.stop(signal: SIGKILL)
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(process.output)")
            let given = command == "serve" ? 2 : 1
            let said = process.output.split(separator: "\n").filter { $0.contains("has its entities in 4 partitions") }
            #expect(said.count == 1 && said.first?.contains("started with --partitions \(given)") == true, "\(process.output)")
            // The worker made no group on the streams of a layout the shop does not have.
            #expect(try await pool.send(EXISTS(RedisArgument(EntityType.customer.stream(.created)))) == 0)
            await pool.shutdown()
        }
    }
}

/// How often a layout check said it waits.
private final class WaitCount: Sendable {
    let count = Atomic<Int>(0)
}
