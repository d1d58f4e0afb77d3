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
        ///
        /// Also in a shop whose entities are spread over 4 partitions
        /// (``ShopLayout``): each partition snapshotted, trimmed and rebuilt on its own, the
        /// lists in creation order across them after every rebuild.
        @Test(arguments: [1, 4]) func snapshotTrimAndRebuildWhileCommandsRun(partitions: Int) async throws {
            try await withShop(layout: ShopLayout(partitions: partitions)) { shop in
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
                        for partition in shop.layout.partitions(type) {
                            _ = try await retention.trim(partition)
                            _ = try await shop.store.rebuild(partition)
                        }
                    }
                    rounds += 1
                }
                let ids = try await writer.value
                let listed = try #require(try await shop.gateway.get("/customers").json?.arrayValue).compactMap { $0["id"]?.stringValue }
                #expect(Array(listed.suffix(ids.count)) == ids)

                // The record (snapshot + streams) replays to exactly what the shop serves.
                for type in EntityType.allCases {
                    var replayed: [(order: Int, created: StreamID, json: [UInt8])] = []
                    let served = try await shop.readModel.list(type)
                    for partition in shop.layout.partitions(type) {
                        _ = try await retention.trim(partition)
                        replayed += try await shop.store.replay(partition).live.map { ($0.state.sequence ?? 0, $0.state.created, $0.state.json) }
                    }
                    // In creation order: by the creations' numbers across partitions, by their entry ids in one.
                    replayed.sort { ($0.order, $0.created) < ($1.order, $1.created) }
                    let fromRecord = ReadModel.jsonArray(replayed.map { .bulkString($0.json) })
                    #expect(String(decoding: fromRecord, as: UTF8.self) == String(decoding: served, as: UTF8.self), "\(type)")
                    for partition in shop.layout.partitions(type) { _ = try await shop.store.rebuild(partition) }
                    #expect(try await shop.readModel.list(type) == served, "\(type)")
                }
                // With nothing written since, the latest snapshots hold every live customer.
                var live = 0
                for partition in shop.layout.partitions(.customer) { live += try #require(try await shop.store.latestSnapshot(partition)).live }
                #expect(live == (try await shop.readModel.count(.customer)))
            }
        }

        /// Trial M: snapshots refused during a slot's move (TRYAGAIN on the install's three keys)
        /// left their staged states for ever (1.1 MB each at 3,555 orders). Here the install's
        /// script fails for another reason (its snapshot record is not a hash), after staging.
        @Test("a snapshot whose install fails leaves no staged states behind, and an installed one never expires")
        func stagedStatesNeverLinger() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let store = EventStore(pool: pool)
                for i in 0..<3 { try await store.create([Customer(id: "c\(i)", name: "N", email: "n\(i)@shop.test")], trace: "t") }
                let snapshot = try await store.takeSnapshot(.customer)
                let keys = EntityType.customer.keys
                func staged() async throws -> [String] {
                    let reply = try await pool.send(RawCommand(["SCAN", "0", "MATCH", "*staging*", "COUNT", "1000"], keys: [], readOnly: true))
                    return reply.array?.last?.array?.compactMap(\.string) ?? []
                }
                // Installed: no expiry (RENAME keeps the staged copy's), no staged copy left.
                #expect(try await pool.send(RawCommand(["PTTL", RedisArgument(keys.snapshotStates)], keys: [RedisArgument(keys.snapshotStates)])).int == -1)
                #expect(try await staged().isEmpty)
                _ = try await pool.send(RawCommand(["DEL", RedisArgument(keys.snapshot)], keys: [RedisArgument(keys.snapshot)]))
                _ = try await pool.send(RawCommand(["SET", RedisArgument(keys.snapshot), "not a hash"], keys: [RedisArgument(keys.snapshot)]))
                await #expect(throws: RedisError.self) { try await store.install(snapshot) }
                #expect(try await staged().isEmpty, "a failed install left its staged states")
                _ = try await pool.send(RawCommand(["DEL", RedisArgument(keys.snapshot)], keys: [RedisArgument(keys.snapshot)]))
                try #require(try await store.install(snapshot))

                // Staged states expire (a process killed before its install leaves nothing for ever)...
                let stagedName = try await store.stage(snapshot)
                let stagedKey = RedisArgument(stagedName)
                let ttl = try await pool.send(RawCommand(["PTTL", stagedKey], keys: [stagedKey])).int ?? -1
                #expect(ttl > 0 && ttl <= 3_600_000, "PTTL \(ttl)")
                // ...and an install whose staged states are gone (expired, or deleted after a lost
                // answer) changes nothing: it put an empty snapshot in place (a review).
                _ = try await pool.send(RawCommand(["DEL", stagedKey], keys: [stagedKey]))
                await #expect(throws: StagedSnapshotMissing.self) { try await store.swapIn(snapshot, staging: stagedName, onlyIfNone: false) }
                #expect(try await pool.send(RawCommand(["HLEN", RedisArgument(keys.snapshotStates)], keys: [RedisArgument(keys.snapshotStates)])).int == 3)
                await pool.shutdown()
            }
        }

        /// A failover between a trim's snapshot and its trim: the promoted replica lacks the new
        /// snapshot (replication is asynchronous) and has the older one. The trim, run there with
        /// the new snapshot's cut, must keep what only the older snapshot plus the streams can
        /// rebuild. Staged on one node: the older snapshot is put back in place of the newer one,
        /// as the promoted replica has it. With the trim's floor taken from the caller's cut
        /// alone, 10 entries go and the rebuild refuses: the stream lacks 5 entries it needs.
        @Test func aTrimAfterItsSnapshotWasLostKeepsWhatTheSurvivingSnapshotDoesNotCover() async throws {
            try await withShop(workers: []) { shop in
                let keys = EntityType.customer.keys
                for i in 0..<5 { _ = try await shop.gateway.post("/customer", ["name": .string("Old\(i)"), "email": .string("old\(i)@shop.test")]) }
                _ = try await shop.store.takeSnapshot(.customer)
                var older: [String: [RedisArgument]] = [:]
                for key in [keys.snapshot, keys.snapshotStates] {
                    let fields = try await shop.pool.send(RawCommand(["HGETALL", RedisArgument(key)], keys: [RedisArgument(key)], readOnly: true)).array ?? []
                    older[key] = fields.compactMap { $0.bytes.map { RedisArgument(bytes: $0) } }
                }
                for i in 0..<5 { _ = try await shop.gateway.post("/customer", ["name": .string("New\(i)"), "email": .string("new\(i)@shop.test")]) }
                let newer = try await shop.store.takeSnapshot(.customer)
                #expect(newer.live == 10)
                // The failover: the node that trims has the older snapshot only.
                for (key, fields) in older {
                    _ = try await shop.pool.send(RawCommand(["DEL", RedisArgument(key)], keys: [RedisArgument(key)]))
                    _ = try await shop.pool.send(RawCommand(["HSET", RedisArgument(key)] + fields, keys: [RedisArgument(key)]))
                }
                #expect(try await shop.store.latestSnapshot(.customer)?.live == 5)
                // CRM's group (the one trim waits for), needing nothing more, so that only the
                // snapshot holds the trim back.
                for stream in EntityType.customer.streams {
                    _ = try await shop.pool.send(
                        RawCommand(["XGROUP", "CREATE", RedisArgument(stream), RedisArgument(CRMWorker.group), "$", "MKSTREAM"], keys: [RedisArgument(stream)]))
                }

                let result = try await EventRetention(pool: shop.pool).trim(.customer, after: newer.cut)
                let created = try #require(result.streams.first { $0.stream == EntityType.customer.stream(.created) })
                #expect(created.removed == 5, "only what the surviving snapshot covers")
                let rebuilt = try await shop.store.rebuild(.customer)
                #expect(rebuilt.live == 10)
                #expect(try await shop.readModel.count(.customer) == 10)
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
