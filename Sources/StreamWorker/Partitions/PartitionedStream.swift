import RedisClient

/// One logical stream spread over `partitions` Redis streams, so that a Redis Cluster spreads
/// it over its shards: a stream lives in one hash slot, so one node's single thread caps it.
///
/// The layout, stable and computable in any language:
/// - **Partition of an event**: the Redis Cluster hash slot of its key (the entity id; what
///   `CLUSTER KEYSLOT <key>` answers: CRC16-XMODEM of the key's hash tag or of the whole key,
///   mod 16384) mod `partitions`. All events of one entity go to one partition, in the order
///   they were published. They are handled in that order only where one consumer reads the
///   partition with one reader and one handler at a time (`readers: 1`, `maxInFlight: 1`) and
///   no handler fails (a retried entry waits while the next ones go on); with more consumers,
///   readers or handlers, entries of one entity may overlap.
/// - **Partition streams**: with one partition, the stream keeps its name (today's layout, so
///   an existing deployment keeps working). With P > 1, partition p of `name` is
///   `<base>:<p>{<P>.<p>.<n>}`, where `<base>` is `name` without braces and `n` the smallest
///   non-negative integer whose tag `<P>.<p>.<n>` hashes into the p-th of P equal ranges of
///   the 16384 slots. The partitions thus lie evenly over the slot space: on a cluster whose
///   primaries own equal contiguous ranges (what `redis-cli --cluster create` makes) and P a
///   multiple of the primary count, each primary holds P / primaries partitions.
/// - Everything that must be atomic with a partition (its group, idempotency markers, dead
///   letters, replay stream: ``StreamKeys``) carries the partition's tag, so each settle stays
///   one script in one slot.
/// - **Recognising a partition** from its name alone (``parse(_:)``): what `ordershop status`,
///   `ordershop dlq` and the workers' metrics do. A partition name carries the base, not the
///   name as configured, so a partitioned stream is shown under its ``base`` (the name without
///   braces: `events:{order}_created` with 8 partitions is shown as `events:order_created`, whose
///   8 partitions are the same streams).
///
/// Changing the partition count from P to P' (1 to P' included: an existing plain stream),
/// without losing or doubling an event:
/// 1. deploy the workers with `partitions: P'` and `formerPartitions: [P]`: they consume the
///    partition streams of both layouts;
/// 2. switch the publishers to P': new events go to the new layout, the old partition streams
///    get no more;
/// 3. wait until `ordershop status` shows the old layout's partitions with no lag and nothing
///    pending (replay or purge their dead letters first);
/// 4. deploy the workers with `partitions: P'` alone; delete the old streams (or let retention
///    trim them).
/// Every event lives in exactly one stream and is consumed there, so none is lost or applied
/// twice. Two things do not hold across the switch: an entity's events published before it
/// (old partition) and after it (new partition) may be handled out of order while both layouts
/// drain; and a publisher that re-sends an event first published before the switch puts it in
/// the new layout, whose idempotency markers do not know it (markers live in each partition's
/// slot): let publishers finish their retries before they switch.
public struct PartitionedStream: Sendable, Hashable, CustomStringConvertible {
    /// The logical stream's name.
    public let name: String
    /// How many partitions (1 = a plain stream).
    public let partitions: Int
    /// The partition streams, by partition.
    public let streams: [String]

    /// At most 1024 partitions: finding each partition's tag takes about P hashes, and a worker
    /// holds connections per partition (``Subscription/partitions``).
    public static let maximumPartitions = 1024

    public init(_ name: String, partitions: Int = 1) {
        precondition((1...Self.maximumPartitions).contains(partitions), "a stream has 1 to \(Self.maximumPartitions) partitions")
        self.name = name
        self.partitions = partitions
        self.streams = (0..<partitions).map { Self.stream(name, partition: $0, of: partitions) }
    }

    public var description: String { partitions == 1 ? name : "\(name) (\(partitions) partitions)" }

    /// The name without braces: what partition names carry, and the name a partitioned stream is
    /// shown under (``parse(_:)``).
    public var base: String { Self.base(name) }

    static func base(_ name: String) -> String { name.filter { $0 != "{" && $0 != "}" } }

    /// Partition `partition` of the logical stream `name` (its ``PartitionedStream/base``) of `partitions`.
    public struct Partition: Sendable, Hashable, CustomStringConvertible {
        /// The logical stream's name: the ``PartitionedStream/base`` it was made from.
        public let name: String
        public let partitions: Int
        public let partition: Int
        /// The partition stream's name.
        public let stream: String

        public var description: String { "\(name) partition \(partition) of \(partitions)" }
    }

    /// The partition a stream name is, when it is exactly what `PartitionedStream(base,
    /// partitions: P).streams[p]` makes for some base, P > 1 and p: `<base>:<p>{<P>.<p>.<n>}`
    /// with `n` the tag the layout picks, recomputed to check. Anything else is nil, a stream
    /// of one partition included (it keeps its own name), so that no other stream is taken for
    /// a partition: a look-alike with another `n`, leading zeros, braces in the base, or a `p`
    /// that is not below P.
    public static func parse(_ stream: String) -> Partition? {
        guard stream.last == "}", let open = stream.lastIndex(of: "{") else { return nil }
        let tag = stream[stream.index(after: open)..<stream.index(before: stream.endIndex)]
        let numbers = tag.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard numbers.count == 3, let count = numbers[0], let partition = numbers[1], numbers[2] != nil,
            (2...maximumPartitions).contains(count), (0..<count).contains(partition)
        else { return nil }
        let prefix = stream[..<open]
        let suffix = ":\(partition)"
        guard prefix.hasSuffix(suffix) else { return nil }
        let base = String(prefix.dropLast(suffix.count))
        // The recomputed name rejects every look-alike: braces in the base (they are removed),
        // another tag (`n` not the layout's, leading zeros, signs).
        guard Self.stream(base, partition: partition, of: count) == stream else { return nil }
        return Partition(name: base, partitions: count, partition: partition, stream: stream)
    }

    /// The partition of events with this key (an entity id).
    public func partition(forKey key: String) -> Int {
        Int(HashSlot(key: key).rawValue) % partitions
    }

    /// The partition stream of events with this key.
    public func stream(forKey key: String) -> String { streams[partition(forKey: key)] }

    /// An XADD of an event with this key to its partition.
    public func add(key: String, fields: [StreamField], trim: StreamTrim? = nil) -> XADD {
        XADD(RedisArgument(stream(forKey: key)), fields: fields, trim: trim)
    }

    /// Partition `partition` of `name` when it has `count` partitions (see the type's layout).
    public static func stream(_ name: String, partition: Int, of count: Int) -> String {
        guard count > 1 else { return name }
        return "\(base(name)):\(partition){\(tag(partition: partition, of: count))}"
    }

    /// The hash tag of partition `partition` of `count`: the first `<count>.<partition>.<n>`
    /// whose slot lies in the partition's share of the slots.
    static func tag(partition: Int, of count: Int) -> String {
        HashSlot.firstName("\(count).\(partition).", slottedIn: partition * HashSlot.count / count..<(partition + 1) * HashSlot.count / count)
    }
}
