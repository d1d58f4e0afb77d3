import RedisClient

/// The numbers by which a type's entities are listed in creation order (their scores in the ids
/// set, ``ReadModelKeys/ids``).
///
/// - One partition: the create script takes the next of the type's counter (`{T}_seq`) itself,
///   and a rebuild numbers the entities again in the order of their creations' entry ids.
/// - Several partitions (``ShopLayout``): the lists of all partitions are merged by these
///   numbers, so they must compare across partitions. A create draws them from the type's one
///   counter (`{T}_seq`, in a slot of its own: `INCRBY n` before the script, one round trip
///   more) and its script writes each into its entity's created event (field `created_seq`), so
///   that a rebuild of a partition gives each entity the number it had. A client that creates
///   one entity after another's answer sees them listed in that order, whichever partitions hold
///   them. A number drawn for a create that is then refused is never used (a gap); a failover
///   that loses the counter's last increments gives later creates numbers already used, and
///   those entities tie (listed either way among themselves).
enum CreationSequence {
    /// The first of `count` numbers for a create in `partition`; nil with one partition (the
    /// script counts).
    static func draw(_ count: Int, of type: EntityType, in partition: EntityPartition, pool: any RedisClientProtocol) async throws -> Int? {
        guard partition.count > 1 else { return nil }
        let counter = RedisArgument(ShopLayout.single.partition(type, 0).keys.sequence)
        guard let last = try await pool.send(RawCommand(["INCRBY", counter, RedisArgument(count)], keys: [counter])).int else {
            throw RedisError(.unexpectedReply, "INCRBY of the \(type) creation counter answered no number")
        }
        return last - count + 1
    }

    /// The event field that carries the number, in a partition of several.
    static let field = "created_seq"
}
