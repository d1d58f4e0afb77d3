import Foundation
@testable import OrderShop
import RedisClient
import StreamWorker
import TestSupport
import Testing

extension ShopIntegration {
    /// Snapshots while the shop writes: each is a consistent cut, and snapshot + trim + rebuild
    /// running beside commands lose nothing.
    @Suite struct SnapshotTests {
        @Test func snapshotTrimAndRebuildWhileCommandsRun() async throws {
            try await withShop { shop in
                let run = await Scenario(shop: shop.gateway).run()
                try #require(run.passed)
                let writer = Task {
                    var ids: [String] = []
                    for i in 0..<60 {
                        ids += try await shop.gateway.post("/customer", ["name": .string("W\(i)"), "email": .string("w\(i)@shop.test")]).ids
                        if i % 3 == 0, let product = run.products.first {
                            _ = try await shop.gateway.put("/product/\(product)", ["name": .string("P\(i)"), "price": 2])
                        }
                    }
                    return ids
                }
                let retention = EventRetention(pool: shop.pool)
                var rounds = 0
                while rounds < 4 {
                    for type in [EntityType.customer, .product] {
                        _ = try await retention.trim(type)
                        _ = try await shop.store.rebuild(type)
                    }
                    rounds += 1
                }
                let ids = try await writer.value
                let listed = try #require(try await shop.gateway.get("/customers").json?.arrayValue).compactMap { $0["id"]?.stringValue }
                #expect(Array(listed.suffix(ids.count)) == ids)

                // The record (snapshot + streams) replays to exactly what the shop serves.
                for type in EntityType.allCases {
                    _ = try await retention.trim(type)
                    let served = try await shop.readModel.list(type)
                    let replayed = try await shop.store.replay(type)
                    let fromRecord = ReadModel.jsonArray(replayed.live.map { .bulkString($0.state.json) })
                    #expect(String(decoding: fromRecord, as: UTF8.self) == String(decoding: served, as: UTF8.self), "\(type)")
                    _ = try await shop.store.rebuild(type)
                    #expect(try await shop.readModel.list(type) == served, "\(type)")
                }
                // With nothing written since, the latest snapshot holds every live customer.
                let snapshot = try #require(try await shop.store.latestSnapshot(.customer))
                #expect(snapshot.live == (try await shop.readModel.count(.customer)))
            }
        }

        @Test func aSnapshotNeverMovesBackwards() async throws {
            try await withShop(workers: []) { shop in
                _ = try await shop.gateway.post("/customer", ["name": "A", "email": "a@shop.test"])
                let older = try await shop.store.takeSnapshot(.customer)
                _ = try await shop.gateway.post("/customer", ["name": "B", "email": "b@shop.test"])
                let newer = try await shop.store.takeSnapshot(.customer)
                #expect(newer.live == 2)
                // Installing the older one again (a slow concurrent `snapshot`) is refused.
                let reply = try await shop.pool.evaluate(
                    EventStore.installSnapshotScript,
                    keys: [RedisArgument(EntityType.customer.keys.snapshot), RedisArgument(EntityType.customer.keys.snapshotStates), "staging-none"],
                    arguments: [
                        RedisArgument(older.cut.positions.map { "\($0.lastID)" }.joined(separator: " ")),
                        RedisArgument(older.cut.positions.map { "\($0.entriesAdded)" }.joined(separator: " ")), "0", "1",
                    ])
                #expect(reply.array?.first?.string == "stale")
                #expect(try await shop.store.latestSnapshot(.customer)?.live == 2)
            }
        }
    }
}
