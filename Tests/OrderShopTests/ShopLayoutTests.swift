@testable import OrderShop
import RedisClient
import StreamWorker
import Testing

/// The layout of partitioned entity types (``ShopLayout``): with one partition every name is
/// what it always was; with more, each partition's keys share one slot, its streams are what a
/// partitioned subscription reads, and ids land in the partition they are drawn into.
@Suite struct ShopLayoutTests {
    @Test func onePartitionKeepsEveryName() {
        let customers = ShopLayout.single.partition(.customer, id: RandomUUID.string())
        #expect(customers.partition == 0)
        #expect(customers.streams == ["events:{customer}_created", "events:{customer}_updated", "events:{customer}_deleted"])
        let keys = customers.keys
        #expect(
            [keys.entities, keys.versions, keys.tombstones, keys.ids, keys.sequence, keys.unique]
                == ["{customer}_entities", "{customer}_versions", "{customer}_tombstones", "{customer}_ids", "{customer}_seq", "{customer}_unique"])
        #expect([keys.snapshot, keys.snapshotStates, keys.replicaBarrier, keys.generation]
            == ["{customer}_snapshot", "{customer}_snapshot_states", "{customer}_replica_barrier", "{customer}_generation"])
        for type in EntityType.allCases {
            #expect(ShopLayout.single.partition(type, 0).keys == type.keys)
            #expect(ShopLayout.single.partition(type, 0).streams == type.streams)
        }
    }

    /// Every key of a partition (streams, read model, snapshot, barrier, a rebuild's staging) in
    /// one slot, the partition's share of the slots, and the same slot for every type's partition
    /// p: a billing beside its order, a stock record beside its product.
    @Test(arguments: [2, 3, 6, 16, ShopLayout.maximumPartitions])
    func aPartitionsKeysShareOneSlotInItsShare(partitions: Int) {
        let layout = ShopLayout(partitions: partitions)
        for p in 0..<partitions {
            let share = p * HashSlot.count / partitions..<(p + 1) * HashSlot.count / partitions
            var slots = Set<HashSlot>()
            for type in EntityType.allCases {
                let partition = EntityPartition(type: type, partition: p, of: layout.partitions)
                let k = partition.keys
                let names =
                    partition.streams + k.all + k.staging("x")
                    + [k.snapshot, k.snapshotStates, k.replicaBarrier, k.generation, k.idempotencyPlaceholder, k.idempotencyPrefix + "{a}b"]
                slots.formUnion(names.map { HashSlot(key: $0) })
                #expect(Set(names).count == names.count, "names of \(partition) repeat")
            }
            #expect(slots.count == 1, "partition \(p) of \(partitions) spans slots \(slots.sorted())")
            #expect(slots.allSatisfy { share.contains(Int($0.rawValue)) })
        }
    }

    /// The partition streams are what `Subscription(stream:partitions:)` reads, and status shows
    /// them under the logical stream's name.
    @Test func theStreamsAreThePartitionStreamsWorkersRead() throws {
        let layout = ShopLayout(partitions: 6)
        for type in EntityType.allCases {
            for action in EventAction.allCases {
                let logical = PartitionedStream(type.stream(action), partitions: 6)
                #expect(layout.partitions(type).map { $0.stream(action) } == logical.streams)
                let parsed = try #require(PartitionedStream.parse(layout.partition(type, 4).stream(action)))
                #expect(parsed.name == "events:\(type)_\(action.rawValue)")
                #expect(parsed.partition == 4)
            }
        }
    }

    /// An id drawn into a partition is in it, by the rule any language computes (the id's slot
    /// mod the count), and is an ordinary id.
    @Test func anIdDrawnIntoAPartitionIsInIt() {
        let layout = ShopLayout(partitions: 6)
        var seen = Set<String>()
        for p in 0..<6 {
            for _ in 0..<200 {
                let id = layout.newID(of: .customer, inPartition: p)
                #expect(Int(HashSlot(key: id).rawValue) % 6 == p)
                #expect(layout.partition(of: .customer, id: id) == p)
                #expect(layout.partition(.customer, id: id).keys.entities == PartitionedStream.stream("{customer}_entities", partition: p, of: 6))
                #expect(id.count == 36)
                seen.insert(id)
            }
        }
        #expect(seen.count == 1_200)
    }

    /// Every type is spread, and partition p of every type shares one slot: a stock record
    /// (in its product's partition) with its product, a billing with its order.
    @Test func everyTypeIsSpreadAndPartitionsShareSlots() {
        let layout = ShopLayout(partitions: 8)
        for p in 0..<8 {
            let slots = Set(EntityType.allCases.map { type -> HashSlot in
                #expect(layout.partitions(of: type) == 8, "\(type)")
                return HashSlot(key: layout.partition(type, p).keys.entities)
            })
            #expect(slots.count == 1, "partition \(p): \(slots)")
        }
        let product = RandomUUID.string()
        #expect(OrderSteps.stockPartition(ofProduct: product, in: layout) == layout.partition(of: .product, id: product))
    }
}
