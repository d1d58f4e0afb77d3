@testable import OrderShop

/// The partition of each type in a shop of one partition (``ShopLayout/single``): what the tests
/// of rebuild, snapshot and trim mean by `.customer` where the store works on a partition.
extension EntityPartition {
    static var customer: EntityPartition { .single(.customer) }
    static var product: EntityPartition { .single(.product) }
    static var inventory: EntityPartition { .single(.inventory) }
    static var order: EntityPartition { .single(.order) }
    static var billing: EntityPartition { .single(.billing) }

    static func single(_ type: EntityType) -> EntityPartition { ShopLayout.single.partition(type, 0) }
}

/// The order steps' keys in a shop of one partition.
extension OrderStepKeys {
    static var open: String { open(in: .inventory) }
    static func decision(_ rid: String) -> String { decision(rid, in: .single) }
}
