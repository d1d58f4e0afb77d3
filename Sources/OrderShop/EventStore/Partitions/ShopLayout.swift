import RedisClient
import StreamWorker

/// How a deployment spreads each entity type's events and read model over partitions, so that
/// on a Redis Cluster one type's commands are served by several primaries' threads, not one.
///
/// The rule, stable and computable in any language (the same as ``PartitionedStream``'s):
/// - **The partition of an entity** is the partition of its id: the Redis Cluster hash slot of
///   the id (`CLUSTER KEYSLOT <id>`) mod `partitions`. Ids are made by the server, so a
///   billing's id is drawn into the partition its order's id gives, and a stock record's into
///   its product's (``EventStore/placement(_:key:)``): one billing per order and one stock
///   record per product (``EntityType/uniqueField``) are then checked in one slot, the one of
///   what they reference.
/// - **The partition's keys** (its three event streams and every read-model key of the type) are
///   the type's names with the partition's hash tag: `PartitionedStream.stream(name, partition:
///   p, of: P)` (``EntityPartition``). So the event streams are exactly the partition streams a
///   worker with `Subscription(stream: type.stream(action), partitions: P)` consumes, each
///   command script still touches one slot, and partition p of every type shares one slot.
/// - With one partition (``single``, the default) every name is today's (`events:{customer}_created`,
///   `{customer}_entities`): a deployment made before partitions keeps working unchanged.
///
/// A deployment's partition count is fixed once it holds data: moving an entity to the
/// partition another count gives it would need its events and read model moved with it.
public struct ShopLayout: Sendable, Hashable, CustomStringConvertible {
    /// How many partitions each entity type has.
    public let partitions: Int

    /// At most 128: an id is drawn into its partition by trying random UUIDs, about `partitions`
    /// of them per id, and every list reads every partition.
    public static let maximumPartitions = 128

    /// One partition: today's names.
    public static let single = ShopLayout(partitions: 1)

    public init(partitions: Int) {
        precondition((1...Self.maximumPartitions).contains(partitions), "a layout has 1 to \(Self.maximumPartitions) partitions")
        self.partitions = partitions
    }

    public var description: String { partitions == 1 ? "one partition" : "\(partitions) partitions" }

    /// How many partitions `type` has in this layout: every type has them all. A stock record
    /// lives in its product's partition and a billing in its order's (their ids are drawn
    /// there), so an order change reserves its units in each stock partition its products are
    /// in (``OrderSteps``).
    public func partitions(of type: EntityType) -> Int { partitions }

    /// The partition of an id among `count` (the id's hash slot mod `count`).
    static func partition(ofID id: String, among count: Int) -> Int {
        count == 1 ? 0 : Int(HashSlot(key: id).rawValue) % count
    }

    /// The partition of an entity of `type` with this id.
    public func partition(of type: EntityType, id: String) -> Int { Self.partition(ofID: id, among: partitions(of: type)) }

    /// Partition `partition` of `type`.
    public func partition(_ type: EntityType, _ partition: Int) -> EntityPartition {
        EntityPartition(type: type, partition: partition, of: partitions(of: type))
    }

    /// The partition that holds the entity of `type` with this id.
    public func partition(_ type: EntityType, id: String) -> EntityPartition {
        partition(type, partition(of: type, id: id))
    }

    /// Every partition of `type`, in order.
    public func partitions(_ type: EntityType) -> [EntityPartition] {
        (0..<partitions(of: type)).map { partition(type, $0) }
    }

    /// A new random id of `type` in partition `partition` of it.
    public func newID(of type: EntityType, inPartition partition: Int) -> String {
        let count = partitions(of: type)
        precondition((0..<count).contains(partition))
        while true {
            let id = RandomUUID.string()
            if Self.partition(ofID: id, among: count) == partition { return id }
        }
    }
}
