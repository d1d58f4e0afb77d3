import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

extension ShopIntegration {
    /// The event store on a real Redis: the original's stream names and fields, Redis-made ids,
    /// versions, read models changed in the same step, replay and rebuild.
    @Suite struct EventStoreTests {
        // Redis answers a script's command on a key its ACL user may not touch with ERR, not NOPERM:
        // it was a 500 carrying the script's sha and line (a user-style pass gave the customer
        // service the CRM worker's user).
        // Keys elsewhere: NOPERM for the script's declared keys; keys readable only: ERR from the
        // script's first write.
        @Test(
            "a command whose Redis user may not use its keys answers 503 naming the ACL, not 500 with the script's text",
            arguments: ["~elsewhere:*", "%R~*"])
        func commandWithoutKeyPermission(keys: String) async throws {
            try await withRedisServer { server in
                let admin = try server.makePool()
                try await admin.send(["ACL", "SETUSER", "narrow", "on", ">pw", "resetkeys", RedisArgument(keys), "+@all"])
                var configuration = server.configuration
                configuration.authentication = .init(username: "narrow", password: "pw")
                let narrow = try RedisConnectionPool(configuration: configuration)
                let store = EventStore(pool: narrow)
                let error = await #expect(throws: (any Error).self) {
                    try await store.create([Customer(id: "c1", name: "Alice", email: "alice@shop.test")], trace: "t")
                }
                let shown = ShopError.from(try #require(error))
                #expect(shown.status == 503, "\(shown)")
                #expect(shown.message.contains("ACL"), "\(shown)")
                #expect(!shown.message.contains("user_script"), "\(shown)")
                await narrow.shutdown()
            }
        }

        @Test func eventsHaveTheOriginalsShapeAndAVersion() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let store = EventStore(pool: pool)
                let alice = Customer(id: "c1", name: "Alice", email: "alice@shop.test")
                try await store.create([alice], trace: "t-1")
                try await store.update(Customer(id: "c1", name: "Alice B", email: "alice@shop.test"), trace: "t-2")
                try await store.delete(.customer, id: "c1", trace: "t-3")

                for (action, version, name) in [(EventAction.created, 1, "Alice"), (.updated, 2, "Alice B"), (.deleted, 3, "Alice B")] {
                    let entries = try await pool.send(XRANGE(RedisArgument("events:{customer}_\(action)")))
                    #expect(entries.count == 1)
                    let e = try #require(entries.first)
                    #expect(UUID(uuidString: try #require(e.string("event_id"))) != nil)
                    #expect(e.streamID != nil)  // made by Redis
                    let entity = try JSONCoding.decode(Customer.self, from: try #require(e["entity"]))
                    #expect(entity.id == "c1" && entity.name == name)
                    #expect(e.string("version") == String(version))
                    #expect(e.string("entity_id") == "c1")
                    #expect(e.string("trace_id") == "t-\(version)")
                    #expect(e.string("time").flatMap(Int.init) != nil)
                }
                // Deleted: gone from queries, kept as a tombstone with its version.
                let model = ReadModel(pool: pool)
                #expect(try await model.one(.customer, id: "c1") == nil)
                #expect(try await model.lookup(Customer.self, id: "c1")?.deleted == true)
                #expect(try await model.version(.customer, id: "c1") == 3)
                // Update or delete of a deleted entity: 404, nothing appended.
                await #expect(throws: ShopError.notFound(.customer, "c1")) { try await store.update(alice, trace: "") }
                await #expect(throws: ShopError.notFound(.customer, "c1")) { try await store.delete(.customer, id: "c1", trace: "") }
                #expect(try await pool.send(XLEN("events:{customer}_updated")) == 1)
                await pool.shutdown()
            }
        }

        @Test func rebuildGivesTheSameReadModel() async throws {
            try await withShop(workers: []) { shop in
                let run = await Scenario(shop: shop.gateway).run()
                try #require(run.passed)
                var before: [EntityType: [UInt8]] = [:]
                for type in EntityType.allCases { before[type] = try await shop.readModel.list(type) }
                let unbilled = try await shop.readModel.unbilledOrders()

                // Wreck the read models, then rebuild them from the streams.
                for type in EntityType.allCases {
                    _ = try await shop.pool.send(DEL(keys: type.keys.all.map { RedisArgument($0) }))
                    _ = try await shop.pool.send(["HSET", RedisArgument(type.keys.entities), "bogus", "{}"])
                }
                for type in EntityType.allCases {
                    let report = try await shop.store.rebuild(.single(type))
                    #expect(report.ignored == 0)
                    #expect(try await shop.readModel.list(type) == before[type], "\(type)")
                }
                #expect(try await shop.readModel.unbilledOrders() == unbilled)
                // Tombstones and versions are back: the deleted customer is null, and known to CRM.
                let deleted = try #require(run.deletedCustomer)
                #expect(try await shop.gateway.get("/customer/\(deleted)").text == "null")
                #expect(try await shop.readModel.lookup(Customer.self, id: deleted)?.deleted == true)
                // Commands go on where they left off: the second order can be updated (version 3 now).
                let order = run.orders[1]
                let current = try #require(try await shop.readModel.lookup(Order.self, id: order)?.entity)
                #expect(try await shop.gateway.put("/order/\(order)", ["product_ids": .array(current.productIDs.map { .string($0) }), "customer_id": .string(current.customerID)]).json == .bool(true))
                #expect(try await shop.readModel.version(.order, id: order) == 3)
                // And new entities still sort after the old ones.
                let id = try #require(try await shop.gateway.post("/customer", ["name": "New", "email": "new@shop.test"]).ids.first)
                #expect(try await shop.gateway.get("/customers").json?.arrayValue?.last?["id"]?.stringValue == id)
            }
        }

        @Test func rebuildWhileCommandsRunLosesNothing() async throws {
            try await withShop(workers: []) { shop in
                let writer = Task {
                    var ids: [String] = []
                    for i in 0..<60 {
                        ids += try await shop.gateway.post("/customer", ["name": .string("W\(i)"), "email": .string("w\(i)@shop.test")]).ids
                    }
                    return ids
                }
                var rebuilds = 0
                while !writer.isCancelled, rebuilds < 5 {
                    _ = try await shop.store.rebuild(.customer)
                    rebuilds += 1
                }
                let ids = try await writer.value
                _ = try await shop.store.rebuild(.customer)
                let listed = try #require(try await shop.gateway.get("/customers").json?.arrayValue).compactMap { $0["id"]?.stringValue }
                #expect(listed == ids)
            }
        }
    }
}

/// The projection on its own: versions make replay order-insensitive and idempotent.
@Suite struct ProjectionTests {
    func event(_ id: UInt64, _ action: EventAction, _ version: Int?, _ name: String, entity: String = "e1") -> RecordedEvent {
        RecordedEvent(
            entryID: StreamID(milliseconds: id, sequence: 0), action: action, eventID: "ev\(id)", entityID: entity,
            json: Array(#"{"id":"\#(entity)","name":"\#(name)"}"#.utf8), version: version)
    }

    @Test func lateAndRepeatedEventsNeverRollBack() {
        var p = Projection()
        var applied: [Bool] = []
        applied.append(p.apply(event(1, .created, 1, "a")))
        applied.append(p.apply(event(3, .updated, 3, "c")))
        applied.append(p.apply(event(2, .updated, 2, "b")))  // late
        applied.append(p.apply(event(3, .updated, 3, "c")))  // repeated
        #expect(String(decoding: p.states["e1"]!.json, as: UTF8.self).contains("\"c\""))
        applied.append(p.apply(event(4, .deleted, 4, "c")))
        applied.append(p.apply(event(5, .updated, 5, "d")))  // a deletion is final
        #expect(applied == [true, true, false, false, true, false])
        #expect(p.live.isEmpty)
        #expect(p.states["e1"]?.deleted == true)
        #expect(p.ignored == 3)
    }

    /// A comparable summary of a projection.
    func summary(_ p: Projection) -> [String: String] {
        p.states.mapValues { "\(String(decoding: $0.json, as: UTF8.self))|\($0.version)|\($0.deleted)" }
    }

    @Test func anyOrderGivesTheSameState() {
        let events = [
            event(1, .created, 1, "a"), event(2, .updated, 2, "b"), event(3, .created, 1, "x", entity: "e2"),
            event(4, .updated, 3, "c"), event(5, .deleted, 2, "x", entity: "e2"),
        ]
        let reference = summary(Projection(events))
        #expect(reference["e1"]?.hasSuffix("|3|false") == true)
        #expect(reference["e2"]?.hasSuffix("|2|true") == true)
        for _ in 0..<20 {
            var p = Projection()
            for e in events.shuffled() + events.shuffled() { p.apply(e) }
            #expect(summary(p) == reference)
        }
    }

    /// The commands never change or delete an entity they have not created, so a rebuild must
    /// not serve one from such changes (XADDed by hand: a trial's rebuild served one). A creation
    /// later in the fold (its entry id above an update's: another primary's clock after a
    /// failover) takes them in, at the highest version.
    @Test func changesOfAnIdNeverCreatedMakeNoEntityUntilItsCreation() {
        var p = Projection()
        #expect(p.apply(event(1, .updated, 2, "ghost", entity: "g")) == false)
        #expect(p.apply(event(2, .deleted, 3, "gone", entity: "d")) == false)
        #expect(p.states.isEmpty)
        #expect(p.live.isEmpty)
        #expect(Set(p.uncreated.keys) == ["g", "d"])
        #expect(p.apply(event(3, .created, 1, "a", entity: "g")) == true)
        #expect(p.states["g"]?.version == 2)
        #expect(String(decoding: p.states["g"]!.json, as: UTF8.self).contains("ghost"))
        #expect(p.live.map(\.id) == ["g"])
        #expect(Set(p.uncreated.keys) == ["d"])
        // The planted bug (the fold before the rule): the uncreated id is served.
        var planted = Projection()
        planted.foldsUncreated = true
        #expect(planted.apply(event(1, .updated, 2, "ghost", entity: "g")) == true)
        #expect(planted.live.map(\.id) == ["g"])
    }

    @Test func eventsWithoutVersionCountInEntryOrder() {
        let p = Projection([event(1, .created, nil, "a"), event(2, .updated, nil, "b"), event(3, .updated, nil, "c")])
        #expect(p.states["e1"]?.version == 3)
        #expect(String(decoding: p.states["e1"]!.json, as: UTF8.self).contains("\"c\""))
    }
}
