import StreamWorker

/// One partition of one entity type: its three event streams and its read model, all in one
/// hash slot (``ShopLayout``). With one partition, the type's names as they always were.
public struct EntityPartition: Sendable, Hashable, CustomStringConvertible {
    public let type: EntityType
    public let partition: Int
    /// The layout's partition count.
    public let count: Int

    public init(type: EntityType, partition: Int, of count: Int) {
        precondition((0..<count).contains(partition), "partition \(partition) of \(count)")
        self.type = type
        self.partition = partition
        self.count = count
    }

    public var description: String { count == 1 ? type.rawValue : "\(type) partition \(partition) of \(count)" }

    /// The name `name` (one of the type's, with its hash tag) has in this partition.
    func name(_ name: String) -> String { PartitionedStream.stream(name, partition: partition, of: count) }

    /// The partition's stream for one action: partition `partition` of the logical stream
    /// `type.stream(action)`, as a worker's partitioned subscription reads it.
    public func stream(_ action: EventAction) -> String { name(type.stream(action)) }

    /// The partition's three event streams, in ``EventAction`` order.
    public var streams: [String] { EventAction.allCases.map(stream) }

    /// The partition's read-model keys.
    public var keys: ReadModelKeys { ReadModelKeys(type: type, partition: partition, of: count) }
}
