import RedisClient

/// The numbers by which a type's entities are listed in creation order (their scores in the ids
/// set, ``ReadModelKeys/ids``).
///
/// - One partition: the create script takes the next of the type's counter (`{T}_seq`) itself,
///   and a rebuild numbers the entities again in the order of their creations' entry ids.
/// - Several partitions (``ShopLayout``): the lists of all partitions are merged by these
///   numbers, so they must compare across partitions. A create draws them from the type's one
///   counter (`{T}_creation_seq`, in a slot of its own: `INCRBY n` before the script, one round
///   trip more); its script scores each entity `number × 1024` (the next free score above it when
///   that is taken in its partition: a failover that lost the counter's last increments hands
///   numbers out again) and writes the score into the entity's created event (field
///   `created_seq`), so that a rebuild of a partition gives each entity its score back. Scores
///   are thus unique in a partition (a list pages by score), and a client that creates one
///   entity after another's answer sees them listed in that order, whichever partitions hold
///   them. A number drawn for a create that is then refused is never used (a gap).
enum CreationSequence {
    /// Scores per drawn number (``draw(_:of:in:pool:)``): room for the numbers handed out again
    /// after a failover.
    static let scoresPerNumber = 1024

    /// The counter of a type's creations in a shop of several partitions (not `{T}_seq`, which
    /// a shop of one partition counts with and its rebuild sets).
    static func counter(_ type: EntityType) -> String { "\(type.tag)_creation_seq" }

    /// The first of `count` numbers for a create in `partition`; nil with one partition (the
    /// script counts).
    static func draw(_ count: Int, of type: EntityType, in partition: EntityPartition, pool: any RedisClientProtocol) async throws -> Int? {
        guard partition.count > 1 else { return nil }
        let counter = RedisArgument(Self.counter(type))
        guard let last = try await pool.send(RawCommand(["INCRBY", counter, RedisArgument(count)], keys: [counter])).int else {
            throw RedisError(.unexpectedReply, "INCRBY of the \(type) creation counter answered no number")
        }
        return last - count + 1
    }

    /// The event field that carries the number, in a partition of several.
    static let field = "created_seq"
}
