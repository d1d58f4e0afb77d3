import RedisClient

/// Where an order change's steps (``OrderSteps``) keep their state, each key in its step's slot:
/// the reservations in the stock partition whose units they move, the decisions in the order's
/// partition. With one partition, the names they always had (`{inventory}_reservations`,
/// `{order}_decision:<rid>`); else each with its partition's hash tag first (as a create's
/// `Idempotency-Key` record), so that a rid changes neither the slot nor the name's shape.
public enum OrderStepKeys {
    /// Reservations of one stock partition: hash rid -> its record (JSON).
    static func reservations(in partition: EntityPartition) -> String { partition.name("\(EntityType.inventory.tag)_reservations") }

    /// Open reservations of one stock partition: sorted set rid -> Redis time in ms when it was prepared.
    public static func open(in partition: EntityPartition) -> String { partition.name("\(EntityType.inventory.tag)_reservations_open") }

    /// A keyed create's reservation, ended, in one stock partition: so that a retry of the
    /// create does not reserve its units there again (its orders are made, or aborted and made
    /// anew under other ids).
    static func ended(_ rid: String, in partition: EntityPartition) -> String {
        partition.name("\(EntityType.inventory.tag)_reservation_ended") + ":" + rid
    }

    /// The decision of the change with this rid, in the order partition the rid is in (a
    /// create's rid is its order's id; an update's or a deletion's is drawn into its order's partition).
    static func decision(_ rid: String, in layout: ShopLayout) -> String {
        layout.partition(.order, id: rid).name("\(EntityType.order.tag)_decision") + ":" + rid
    }

    /// How many order changes the reservation reaper aborted in one order partition (a counter):
    /// a decision it made `aborted`, its change's process having died or stalled between the steps.
    /// Not the decisions a request itself aborts (a keyed create refused in a later stock partition).
    public static func reaperAborts(in partition: EntityPartition) -> String { partition.name("\(EntityType.order.tag)_reaper_aborts") }

    /// The keys of ``OrderScripts/inventoryPrelude`` in one stock partition.
    static func inventory(in partition: EntityPartition) -> [RedisArgument] {
        let i = partition.keys
        return [i.entities, i.versions, i.unique, partition.stream(.updated), reservations(in: partition), open(in: partition)].map { RedisArgument($0) }
    }
}
