import RedisClient
import StreamWorker

/// The five entity types of OrderShop's domain model.
public enum EntityType: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case customer, product, inventory, order, billing

    public var description: String { rawValue }

    /// The plural the HTTP routes use (`/customers`); inventory has no plural, like the original.
    public var plural: String { self == .inventory ? "inventory" : rawValue + "s" }

    /// The Redis Cluster hash tag shared by every key of this entity type (streams and read model),
    /// so that one Lua script may touch all of them on one node.
    public var tag: String { "{\(rawValue)}" }

    /// The event stream for one action: `events:{customer}_created`, as the original names it.
    public func stream(_ action: EventAction) -> String { "events:\(tag)_\(action.rawValue)" }

    /// All three event streams of this type.
    public var streams: [String] { EventAction.allCases.map(stream) }

    /// Read-model keys. See ``ReadModelKeys``.
    public var keys: ReadModelKeys { ReadModelKeys(type: self) }

    /// The field whose value must be unique among live entities of this type, if any: one stock
    /// record per product, one billing per order.
    public var uniqueField: String? {
        switch self {
        case .inventory: "product_id"
        case .billing: "order_id"
        default: nil
        }
    }

    /// The entity type a field of this type must reference (a live entity) on create and update.
    public var reference: (field: String, type: EntityType)? {
        switch self {
        case .inventory: ("product_id", .product)
        case .billing: ("order_id", .order)
        default: nil
        }
    }
}

/// The three things that happen to an entity.
public enum EventAction: String, Sendable, CaseIterable, Codable {
    case created, updated, deleted
}

/// Where one entity type's read model lives in Redis. Every key carries the type's hash tag.
///
/// - `{T}_entities`: hash id -> entity JSON, live entities only (what queries answer).
/// - `{T}_versions`: hash id -> version of the latest change, kept after deletion, so that a
///   repeated or late event can never roll an entity back or bring it back to life.
/// - `{T}_tombstones`: hash id -> last JSON of deleted entities (mails about an order of a deleted
///   customer still reach the last known address).
/// - `{T}_ids`: sorted set of live ids, scored by creation order, so lists come back in the order
///   entities were created (the original client picks "the second order" by position).
/// - `{T}_seq`: the counter behind those scores.
/// - `{T}_unique`: hash unique value -> id, for types with a ``EntityType/uniqueField``.
public struct ReadModelKeys: Sendable, Hashable {
    public let type: EntityType
    /// The partition these keys are of, and the layout's partition count (``EntityPartition``):
    /// with one partition, the names above; else each with the partition's hash tag.
    public let partition: Int
    public let partitions: Int

    public init(type: EntityType, partition: Int = 0, of partitions: Int = 1) {
        self.type = type
        self.partition = partition
        self.partitions = partitions
    }

    private func name(_ suffix: String) -> String {
        PartitionedStream.stream("\(type.tag)_\(suffix)", partition: partition, of: partitions)
    }

    public var entities: String { name("entities") }
    public var versions: String { name("versions") }
    public var tombstones: String { name("tombstones") }
    public var ids: String { name("ids") }
    public var sequence: String { name("seq") }
    public var unique: String { name("unique") }

    /// The latest snapshot's metadata: hash `position` (last entry id per stream, in
    /// ``EventAction`` order), `entries_added` (per stream), `taken_at` (epoch ms), `entities`.
    /// Not a read-model key: a rebuild never replaces it. See ``ReadModelSnapshot``.
    public var snapshot: String { name("snapshot") }
    /// The latest snapshot's states: hash id -> "version deleted created-entry-id\n" + entity JSON.
    public var snapshotStates: String { name("snapshot_states") }

    /// Written by a refused command with `--confirm-replicas` (and expiring a minute later), so
    /// that `WAIT` covers the state the refusal rests on. Not a read-model key.
    public var replicaBarrier: String { name("replica_barrier") }

    /// A create's `Idempotency-Key` record is this followed by the key
    /// (``EventStore/CreateKey``): the partition's tag comes first, so braces in the key change
    /// neither its slot nor its name.
    public var idempotencyPrefix: String { name("idempotency") + ":" }
    /// A name of the partition's slot that the create script is given when there is no key (a
    /// script's keys are fixed in number) and never touches.
    public var idempotencyPlaceholder: String { name("idempotency") }

    /// A value each rebuild's swap sets anew (a UUID): a list read in pages (``ReadModel/list(_:)``)
    /// starts again when it changes between two pages, since the swap may renumber the
    /// creation order the pages follow. Not a read-model key: a rebuild never stages it.
    public var generation: String { name("generation") }

    /// Every read-model key of the type (for rebuilds).
    public var all: [String] { [entities, versions, tombstones, ids, sequence, unique] }

    /// The same keys with a suffix, where a rebuild writes before it swaps them in.
    public func staging(_ suffix: String) -> [String] { all.map { $0 + ":rebuild:" + suffix } }
}
